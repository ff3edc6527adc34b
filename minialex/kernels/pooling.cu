// Overlapping max pooling (paper §3.4) for minialex.functional.max_pool2d, on CuPy arrays.
//
//   x (N, C, H, W) -> y (N, C, OH, OW), argmax (N, C, OH, OW) int32
//
// argmax holds the offset i*KW + j of the window's maximum; ties go to the first maximum in
// (i, j) row-major order (strict >), a NaN beats every number (the first NaN wins, so a blow-up
// stays visible), padding never wins: exactly the NumPy twin's rules.

#include "windows.cuh"

template <typename T>
__global__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y,
                                 int* __restrict__ argmax, const long long total,
                                 const int H, const int W, const int KH, const int KW,
                                 const int SH, const int SW, const int PH, const int PW,
                                 const int OH, const int OW) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int plane = (int)(idx / ((long long)OH * OW));  // n * C + c (< 2^31)
        const int rem = (int)(idx - (long long)plane * OH * OW);
        const int oy = rem / OW;
        const int ox = rem % OW;
        const T* xplane = x + (long long)plane * H * W;
        T best = T(0);
        int where = -1;
        for (int i = 0; i < KH; ++i) {
            const int iy = oy * SH - PH + i;
            if (iy < 0 || iy >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const int ix = ox * SW - PW + j;
                if (ix < 0 || ix >= W) continue;
                const T v = xplane[iy * W + ix];
                if (where < 0 || v > best || (v != v && best == best)) {   // v != v: NaN
                    best = v;
                    where = i * KW + j;
                }
            }
        }
        y[idx] = best;
        argmax[idx] = where;
    }
}

// Backward as a gather: one thread per input pixel sums dy over every window that covers it and
// whose maximum sits on it. Overlapping windows (stride < window) can give a pixel several
// shares, all added (§3.4). No atomics: deterministic.
template <typename T>
__global__ void max_pool_backward(const T* __restrict__ gy, const int* __restrict__ argmax,
                                  T* __restrict__ gx, const long long total,
                                  const int H, const int W, const int KH, const int KW,
                                  const int SH, const int SW, const int PH, const int PW,
                                  const int OH, const int OW) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int plane = (int)(idx / ((long long)H * W));    // n * C + c (< 2^31)
        const int rem = (int)(idx - (long long)plane * H * W);
        const int y = rem / W;
        const int xx = rem % W;
        const T* g = gy + (long long)plane * OH * OW;
        const int* a = argmax + (long long)plane * OH * OW;
        // Only the windows that cover (y, x), windows.cuh (at most 2 x 2 for 3x3/2 pooling).
        const int ty = y + PH, tx = xx + PW;
        int oy0, oy1, ox0, ox1;
        covering_windows(ty, KH, SH, OH, oy0, oy1);
        covering_windows(tx, KW, SW, OW, ox0, ox1);
        T sum = T(0);
        for (int oy = oy0; oy <= oy1; ++oy) {
            const int i = ty - oy * SH;
            for (int ox = ox0; ox <= ox1; ++ox) {
                const int j = tx - ox * SW;
                if (a[oy * OW + ox] == i * KW + j) sum += g[oy * OW + ox];
            }
        }
        gx[idx] = sum;
    }
}
