// Layout changes between the GEMMs of the GPU conv2d (functional/conv_gpu.py) and NCHW, with the
// bias and, when asked, the ReLU that follows every AlexNet convolution (§3.1) folded in.
//
//   knp  (K, N*P)   row k = kernel, column n*P + q      what Y^T = W @ colsT produces
//   nchw (N, K, P)  P = OH*OW positions                 what the next layer reads
//
// Folding the ReLU in saves a whole pass over the activation each way: the forward writes
// max(0, y) directly, and the backward masks dy by y > 0 while it transposes it. The test is
// ``v < 0 ? 0 : v``, not ``v > 0 ? v : 0``, so a NaN passes through as NaN (numpy.maximum does
// the same), and the training loop's NaN guard still sees it.
//
// Templated on T (float or double); flat indices fit 32 bits (checked in Python), one thread per
// element in a grid-stride loop, neighbouring threads on neighbouring addresses of both arrays'
// long axis (q), so reads and writes are coalesced.

template <typename T>
__global__ void knp_to_nchw(const T* __restrict__ src, const T* __restrict__ bias,
                            T* __restrict__ y, const long long total,
                            const int K, const int P, const int relu) {
    const int NP = (int)(total / K);
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int i = (int)idx;                        // y[n, k, q], i = (n*K + k)*P + q
        const int q = i % P;
        const int nk = i / P;
        const int k = nk % K;
        const int n = nk / K;
        const T v = src[(long long)k * NP + n * P + q] + bias[k];
        y[idx] = (relu && v < T(0)) ? T(0) : v;
    }
}

// dst[k, n*P + q] = src[n, k, q], or 0 where relu is set and mask[n, k, q] (the layer's ReLU
// output y) is not positive: dx = dy * [y > 0], the ReLU's backward, on the way to the GEMMs.
// When relu is 0 the mask is never read (callers pass src again).
template <typename T>
__global__ void nchw_to_knp(const T* __restrict__ src, const T* __restrict__ mask,
                            T* __restrict__ dst, const long long total,
                            const int K, const int P, const int relu) {
    const int NP = (int)(total / K);
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int i = (int)idx;                        // dst[k, n*P + q], i = k*NP + n*P + q
        const int k = i / NP;
        const int r = i - k * NP;
        const int n = r / P;
        const int q = r - n * P;
        const int s = (n * K + k) * P + q;
        dst[idx] = (!relu || mask[s] > T(0)) ? src[s] : T(0);
    }
}
