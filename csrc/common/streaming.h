// When the CPU kernels write their output with non-temporal (streaming) stores: the one
// threshold the convolution engine (csrc/conv_cpu) and the warp (csrc/cpu) share.
#pragma once

#include <cstdint>

namespace mtu {
namespace cpu {

// Outputs of more bytes than this are written with non-temporal stores: they do not stay in
// the cache anyway, and normal stores would first read every line they write (the page-sized
// full-resolution outputs of the network: 96 MB for 26 channels at 720p). Smaller outputs stay
// cached for the next op, which reads them.
constexpr int64_t kStreamBytes = int64_t(32) << 20;

}  // namespace cpu
}  // namespace mtu
