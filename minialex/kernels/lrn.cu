// Local response normalisation, paper-literal (§3.3), for minialex.functional.local_response_norm.
//
//   scale_c = k + alpha * sum_{j = max(0, c-half)}^{min(C-1, c+half)} x_j^2
//   y_c     = x_c * scale_c^(-beta)
//   dx_c    = dy_c * scale_c^(-beta) - 2*alpha*beta * x_c * sum_{i in window(c)} dy_i * y_i / scale_i
//
// x, y, scale, dy, dx are (N, C, HW) flat; one thread per element; sums in T, visited in the NumPy
// twin's order (self, then c-1, c+1, c-2, c+2, ...).

__device__ __forceinline__ float power(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double power(double a, double b) { return pow(a, b); }

template <typename T>
__global__ void lrn_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                            const long long total, const int C, const int HW, const int half,
                            const T alpha, const T beta, const T k) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int c = (int)(idx / HW) % C;            // (n * C + c) fits in an int
        const T a = x[idx];
        T s = a * a;
        for (int d = 1; d <= half; ++d) {
            if (c - d >= 0) { const T v = x[idx - (long long)d * HW]; s += v * v; }
            if (c + d < C)  { const T v = x[idx + (long long)d * HW]; s += v * v; }
        }
        const T sc = k + alpha * s;
        scale[idx] = sc;
        y[idx] = a * power(sc, -beta);
    }
}

template <typename T>
__global__ void lrn_backward(const T* __restrict__ gy, const T* __restrict__ x,
                             const T* __restrict__ y, const T* __restrict__ scale,
                             T* __restrict__ gx, const long long total, const int C, const int HW,
                             const int half, const T beta, const T two_alpha_beta) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int c = (int)(idx / HW) % C;            // (n * C + c) fits in an int
        T inner = gy[idx] * y[idx] / scale[idx];
        for (int d = 1; d <= half; ++d) {
            if (c - d >= 0) { const long long o = idx - (long long)d * HW; inner += gy[o] * y[o] / scale[o]; }
            if (c + d < C)  { const long long o = idx + (long long)d * HW; inner += gy[o] * y[o] / scale[o]; }
        }
        gx[idx] = gy[idx] * power(scale[idx], -beta) - two_alpha_beta * x[idx] * inner;
    }
}
