// Softmax cross-entropy, the objective of §5 (the mean over the batch of -log softmax(x_n)[label_n]),
// in two kernels, for minialex.functional.loss.cross_entropy on a GPU.
//
//   m_n      = max_j x[n, j]
//   lse_n    = m_n + log sum_j exp(x[n, j] - m_n)              log-sum-exp: exp never overflows
//   loss_n   = lse_n - x[n, label_n]                           = -log softmax(x_n)[label_n]
//   dx[n, j] = (exp(x[n, j] - lse_n) - [j == label_n]) * dloss / N
//
// x is (N, C) row-major, labels int32 in [0, C) (checked in Python when asked; a label outside
// that range gives a NaN loss and no onehot term, never a read outside the row), loss and lse (N,). The mean
// of loss_n over n is CuPy's sum; the backward reads lse_n, so the (N, C) log-probabilities are
// never stored. Written the NumPy way (functional/loss.py) this is about fifteen small launches:
// max, subtract, exp, sum, log, subtract, gather, mean, then exp, scatter, scale; here it is the
// two kernels below and CuPy's sum: three launches.

#define CE_THREADS 256   // threads per block of cross_entropy_forward: a power of two

__device__ __forceinline__ float exp_of(float a) { return expf(a); }
__device__ __forceinline__ double exp_of(double a) { return exp(a); }
__device__ __forceinline__ float log_of(float a) { return logf(a); }
__device__ __forceinline__ double log_of(double a) { return log(a); }

// One block per row (blockDim.x == CE_THREADS): the threads stride over the row's classes, then
// meet in a shared-memory tree, first for the max, then for the sum of exponentials. A NaN in the
// row makes the sum, and so the loss, NaN (the training loop's guard sees it).
template <typename T>
__global__ void cross_entropy_forward(const T* __restrict__ x, const int* __restrict__ labels,
                                      T* __restrict__ loss, T* __restrict__ lse,
                                      const int N, const int C) {
    __shared__ T partial[CE_THREADS];
    const int t = threadIdx.x;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const T* row = x + (long long)n * C;
        T m = row[0];
        for (int j = t; j < C; j += blockDim.x) m = row[j] > m ? row[j] : m;
        partial[t] = m;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
            if (t < stride && partial[t + stride] > partial[t]) partial[t] = partial[t + stride];
            __syncthreads();
        }
        m = partial[0];
        __syncthreads();                              // all have read the max before the sums
        T s = T(0);
        for (int j = t; j < C; j += blockDim.x) s += exp_of(row[j] - m);
        partial[t] = s;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
            if (t < stride) partial[t] += partial[t + stride];
            __syncthreads();
        }
        if (t == 0) {
            const T l = m + log_of(partial[0]);
            const int label = labels[n];
            lse[n] = l;
            loss[n] = (label >= 0 && label < C) ? l - row[label] : T(0) / T(0);   // NaN: bad label
        }
        __syncthreads();                              // partial is free for the next row
    }
}

// One thread per element of dx: softmax from the saved lse_n, minus one at the label, times
// dloss / N (dloss is the 0-d upstream gradient, read on the GPU: no host sync).
template <typename T>
__global__ void cross_entropy_backward(const T* __restrict__ x, const int* __restrict__ labels,
                                       const T* __restrict__ lse, const T* __restrict__ dloss,
                                       T* __restrict__ dx, const long long total, const int C,
                                       const T inv_n) {
    const T scale = dloss[0] * inv_n;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int n = (int)(idx / C);                 // N < 2^31 (checked in Python)
        const int j = (int)(idx - (long long)n * C);
        const T p = exp_of(x[idx] - lse[n]);
        dx[idx] = (p - (j == labels[n] ? T(1) : T(0))) * scale;
    }
}
