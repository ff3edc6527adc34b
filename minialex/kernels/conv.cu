// im2col and col2im for minialex.functional.conv2d (paper §3.5), on CuPy arrays.
//
// Layouts (row-major, as in the NumPy twin in functional/conv.py):
//   x     (N, C, H, W)
//   cols  (N*OH*OW, C*KH*KW)   row (n*OH + oy)*OW + ox, column (c*KH + i)*KW + j
//
// Templated on the element type T (float or double): values are copied and summed in T, the
// input's dtype. One thread per output element, grid-stride loops, 64-bit flat indices.

#include "windows.cuh"

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, const long long total,
                       const int C, const int H, const int W, const int KH, const int KW,
                       const int SH, const int SW, const int PH, const int PW,
                       const int OH, const int OW) {
    const long long ckk = (long long)C * KH * KW;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const long long row64 = idx / ckk;             // the one 64-bit division
        const int row = (int)row64;                    // N*OH*OW < 2^31 (checked in Python)
        const int col = (int)(idx - row64 * ckk);
        const int j = col % KW;
        const int i = (col / KW) % KH;
        const int c = col / (KW * KH);
        const int ox = row % OW;
        const int oy = (row / OW) % OH;
        const int n = row / (OW * OH);
        const int iy = oy * SH - PH + i;
        const int ix = ox * SW - PW + j;
        T v = T(0);                                   // zero padding
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
            v = x[((long long)(n * C + c) * H + iy) * W + ix];
        }
        cols[idx] = v;
    }
}

// col2im as a gather: one thread per input pixel (n, c, y, x) sums the column entries that
// im2col copied from it, i.e. every window position (oy, ox) that covers it (windows.cuh). No
// atomics, so the result is deterministic. The windows are visited from the last to the first, so
// the kernel offsets (i, j) come in the same row-major order as in the NumPy twin's loop.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x, const long long total,
                       const int C, const int H, const int W, const int KH, const int KW,
                       const int SH, const int SW, const int PH, const int PW,
                       const int OH, const int OW) {
    const long long ckk = (long long)C * KH * KW;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int plane = (int)(idx / ((long long)H * W));   // n * C + c (< 2^31)
        const int rem = (int)(idx - (long long)plane * H * W);
        const int y = rem / W;
        const int xx = rem % W;
        const int c = plane % C;
        const int n = plane / C;
        const int ty = y + PH, tx = xx + PW;                   // position in the padded input
        int oy0, oy1, ox0, ox1;
        covering_windows(ty, KH, SH, OH, oy0, oy1);
        covering_windows(tx, KW, SW, OW, ox0, ox1);
        T sum = T(0);
        for (int oy = oy1; oy >= oy0; --oy) {
            const int i = ty - oy * SH;                        // kernel row, ascending
            for (int ox = ox1; ox >= ox0; --ox) {
                const int j = tx - ox * SW;
                sum += cols[(long long)((n * OH + oy) * OW + ox) * ckk + (c * KH + i) * KW + j];
            }
        }
        x[idx] = sum;
    }
}

// ---------------------------------------------------------------------------------------------
// The transposed layout the GPU conv2d uses (functional/conv_gpu.py):
//   colsT (C*KH*KW, N*OH*OW) = cols.T    row r = (c*KH + i)*KW + j, column q = (n*OH + oy)*OW + ox
// Neighbouring threads take neighbouring output positions q, so both the reads of x and the
// writes of colsT are coalesced, and the GEMMs Y^T = W @ colsT, dW = dY^T @ colsT^T and
// dcolsT = W^T @ dY^T need no transposed copies. ``c_offset``/``C_total`` select one group's
// channels inside the whole input, so a grouped conv never slices (copies) its input.
// ---------------------------------------------------------------------------------------------

template <typename T>
__global__ void im2col_t(const T* __restrict__ x, T* __restrict__ cols,
                         const int C_total, const int c_offset, const int CKK, const int NP,
                         const int H, const int W, const int KH, const int KW,
                         const int SH, const int SW, const int PH, const int PW,
                         const int OH, const int OW) {
    for (int r = blockIdx.y; r < CKK; r += gridDim.y) {       // one row of colsT per block row
        const int j = r % KW;
        const int i = (r / KW) % KH;
        const int c = r / (KW * KH) + c_offset;
        T* out = cols + (long long)r * NP;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < NP; q += blockDim.x * gridDim.x) {
            const int ox = q % OW;
            const int t = q / OW;
            const int oy = t % OH;
            const int n = t / OH;
            const int iy = oy * SH - PH + i;
            const int ix = ox * SW - PW + j;
            T v = T(0);                                        // zero padding
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                v = x[(((long long)n * C_total + c) * H + iy) * W + ix];
            }
            out[q] = v;
        }
    }
}

// The adjoint of im2col_t, as a gather: one thread per input pixel (n, c, y, x) of one group sums
// the entries of colsT copied from it, over the windows that cover the pixel (windows.cuh).
// No atomics.
template <typename T>
__global__ void col2im_t(const T* __restrict__ cols, T* __restrict__ x, const long long total,
                         const int C_total, const int c_offset, const int C, const int NP,
                         const int H, const int W, const int KH, const int KW,
                         const int SH, const int SW, const int PH, const int PW,
                         const int OH, const int OW) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const int plane = (int)(idx / ((long long)H * W));   // n * C + c within the group
        const int rem = (int)(idx - (long long)plane * H * W);
        const int y = rem / W;
        const int xx = rem - y * W;
        const int c = plane % C;
        const int n = plane / C;
        const int ty = y + PH, tx = xx + PW;                   // position in the padded input
        int oy0, oy1, ox0, ox1;
        covering_windows(ty, KH, SH, OH, oy0, oy1);
        covering_windows(tx, KW, SW, OW, ox0, ox1);
        T sum = T(0);
        for (int oy = oy0; oy <= oy1; ++oy) {
            const int i = ty - oy * SH;
            for (int ox = ox0; ox <= ox1; ++ox) {
                const int j = tx - ox * SW;
                sum += cols[(long long)((c * KH + i) * KW + j) * NP + (n * OH + oy) * OW + ox];
            }
        }
        x[((long long)n * C_total + c_offset + c) * H * W + rem] = sum;
    }
}
