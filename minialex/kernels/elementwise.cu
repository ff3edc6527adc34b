// One pass over flat arrays, one thread per element in a grid-stride loop (all arrays contiguous,
// of the same length ``total``; templated on T, float or double).
//
//   relu_backward   dx = dy where y > 0, else 0            functional/activation.py (§3.1)
//   sgd_update      v <- mu*v - dlr*w - lr*g ; w <- w + v   optim.py, the paper's update (§5),
//                   dlr = weight_decay * lr; w and v in place: three reads, two writes per
//                   weight instead of the five passes the three NumPy lines take

template <typename T>
__global__ void relu_backward(const T* __restrict__ y, const T* __restrict__ gy,
                              T* __restrict__ gx, const long long total) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        gx[idx] = y[idx] > T(0) ? gy[idx] : T(0);
    }
}

template <typename T>
__global__ void sgd_update(T* __restrict__ w, T* __restrict__ v, const T* __restrict__ g,
                           const long long total, const T lr, const T mu, const T dlr) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        const T vi = mu * v[idx] - dlr * w[idx] - lr * g[idx];
        v[idx] = vi;
        w[idx] = w[idx] + vi;
    }
}
