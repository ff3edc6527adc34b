"""The CLI's promise for a user mistake, checked by test_cli.py and test_faults.py alike."""


def one_line_error(result, *fragments):
    """Exit status 1, and one line 'error: ...' at the end (train may have said which preset it
    chose first), holding every fragment; no traceback. Returns that line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]
