// Redial delays: exponential backoff with jitter. The first retry is fast; later
// ones double up to a cap, each scaled by a random factor in [0.5, 1.5).
//
//   Backoff b;  auto d = b.next();  ...;  b.reset();   // after real progress
#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace ferry {

class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds first = std::chrono::milliseconds(50),
                   std::chrono::milliseconds cap = std::chrono::milliseconds(4000))
      : first_(first), cap_(cap), rng_(std::random_device{}()) {}
  std::chrono::milliseconds next() {
    auto base = std::min<std::chrono::milliseconds::rep>(cap_.count(), first_.count() << std::min(attempt_, 16u));
    ++attempt_;
    std::uniform_real_distribution<double> jitter(0.5, 1.5);
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(static_cast<double>(base) * jitter(rng_)));
  }
  unsigned attempts() const { return attempt_; }
  void reset() { attempt_ = 0; }

 private:
  std::chrono::milliseconds first_, cap_;
  unsigned attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace ferry
