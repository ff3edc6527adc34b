// Which output windows cover one input position, along one axis: shared by the gather kernels
// that sum over overlapping windows (col2im and col2im_t in conv.cu, max_pool_backward in
// pooling.cu). ``source()`` in kernels/__init__.py inlines this file where a .cu includes it.
//
// Window o (0 <= o < O) of size K and stride S covers padded positions o*S .. o*S + K - 1, so
// padded position t is covered by o from ceil((t - K + 1) / S) to floor(t / S), clipped to
// [0, O - 1]: the loop ``for (o = lo; o <= hi; ++o)`` visits exactly those windows, at most
// ceil(K / S) of them, with no modulo test per kernel offset.
__device__ __forceinline__ void covering_windows(const int t, const int K, const int S,
                                                 const int O, int& lo, int& hi) {
    lo = t < K ? 0 : (t - K) / S + 1;
    hi = min(t / S, O - 1);
}
