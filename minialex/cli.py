"""The command line: ``python cli.py COMMAND`` or, once installed, ``minialex COMMAND``.

Thin by design: each command parses its options and calls a job in the package.
"""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="minialex")
def main():
    """minialex: AlexNet (Krizhevsky, Sutskever and Hinton, 2012) from the array up.

    \b
    Examples:
      python cli.py train              # train on the built-in dataset
      python cli.py info --preset paper
    """


if __name__ == "__main__":
    main()
