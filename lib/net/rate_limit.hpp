// RateLimit: a token bucket for --bwlimit. A Connection with one takes from it before
// every read and write, so the bytes it moves in either direction average at most
// `rate` per second; when it is empty the Connection stops polling until wait()
// has passed. Pure: the caller passes the time.
//
//   RateLimit r(10 << 20, now);               // 10 MiB/s
//   std::size_t n = r.allowance(want, now);   // 0: wait r.wait(now), then try again
//   n = read_or_write(at most n);  r.spend(n);
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace ferry {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;
  // A burst of at most a tenth of a second's worth (at least 4 KiB), so that a pause
  // is never followed by a long spell at full speed.
  RateLimit(std::uint64_t bytes_per_second, Clock::time_point now)
      : rate_(std::max<std::uint64_t>(bytes_per_second, 1)),
        burst_(std::max<double>(static_cast<double>(rate_) / 10, 4096)),
        tokens_(0),
        at_(now) {}

  // How many bytes one read or write may try now: 0 while the bucket is in debt or
  // empty, else at most a burst.
  std::size_t allowance(std::size_t want, Clock::time_point now) {
    refill(now);
    if (tokens_ <= 0) return 0;
    return static_cast<std::size_t>(std::min(static_cast<double>(want), burst_));
  }
  // Records `n` bytes that moved (the bucket may go into debt: a read learns its
  // size only after it happened).
  void spend(std::size_t n) { tokens_ -= static_cast<double>(n); }
  // How long until the bucket is out of debt and holds a quarter of a burst.
  std::chrono::milliseconds wait(Clock::time_point now) {
    refill(now);
    const double need = burst_ / 4 - tokens_;
    if (need <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(static_cast<std::int64_t>(need * 1000 / static_cast<double>(rate_)) + 1);
  }
  std::uint64_t rate() const { return rate_; }

 private:
  void refill(Clock::time_point now) {
    if (now <= at_) return;
    const double secs = std::chrono::duration<double>(now - at_).count();
    tokens_ = std::min(burst_, tokens_ + secs * static_cast<double>(rate_));
    at_ = now;
  }
  std::uint64_t rate_;
  double burst_;
  double tokens_;
  Clock::time_point at_;
};

}  // namespace ferry
