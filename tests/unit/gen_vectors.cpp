// ferry-gen-vectors: prints the known-answer frame vectors, one line per frame,
// "name hex-of-the-encoded-frame". Its output is committed as
// tests/unit/vectors/frames.txt and checked by codec_kat_test:
//
//   build/tests/unit/ferry-gen-vectors > tests/unit/vectors/frames.txt
//
// A change in this output is a wire-format change: bump the protocol version.
#include <iostream>

#include "tests/unit/kat_frames.hpp"

int main() {
  for (const auto& k : ferry::kat::kat_frames()) {
    std::cout << k.name << ' ' << ferry::kat::to_hex(k.wire) << '\n';
  }
  return std::cout.good() ? 0 : 1;
}
