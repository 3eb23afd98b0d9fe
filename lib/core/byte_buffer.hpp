// ByteBuffer and BufferPool: block-sized buffers that are reused, never zero-filled and
// never allocated per chunk (issue: the data path did both for every 256 KiB read).
//
// A BufferPool owns at most `max_buffers` buffers of `capacity` bytes each. acquire()
// hands one out (nullopt when all are out: the caller waits for one to come back, it
// never allocates beyond the bound); a ByteBuffer returns its storage to the pool when it
// is destroyed, from any thread (the pool is mutex-guarded and outlives its buffers: each
// buffer holds a reference to the pool's shared state).
//
//   BufferPool pool(256 * 1024, 20);
//   if (auto b = pool.acquire()) {
//     b->resize(pread(fd, b->data(), b->capacity(), off));   // no zero-fill
//     send(b->span());
//   }                                                       // back in the pool here
//
// Memory only: no I/O, usable in the sans-I/O sessions and the simulator.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ferry {

namespace detail {
struct PoolState;
}

class ByteBuffer {
 public:
  ByteBuffer() = default;  // empty: no storage, size 0
  ByteBuffer(ByteBuffer&& o) noexcept;
  ByteBuffer& operator=(ByteBuffer&& o) noexcept;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer();

  // A buffer of its own (not from a pool) holding a copy of `bytes`: for tests and
  // control paths, never the data path.
  static ByteBuffer copy_of(std::span<const std::byte> bytes);

  std::byte* data() { return storage_.get(); }
  const std::byte* data() const { return storage_.get(); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  // Precondition: n <= capacity(). Never initialises bytes.
  void resize(std::size_t n);
  std::span<const std::byte> span() const { return {storage_.get(), size_}; }
  std::span<std::byte> writable() { return {storage_.get(), capacity_}; }
  explicit operator bool() const { return storage_ != nullptr; }

 private:
  friend class BufferPool;
  void release();
  std::unique_ptr<std::byte[]> storage_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::shared_ptr<detail::PoolState> pool_;  // null: not from a pool
};

class BufferPool {
 public:
  // Buffers of `capacity` bytes, at most `max_buffers` out at once (both > 0).
  BufferPool(std::size_t capacity, std::size_t max_buffers);
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of capacity() bytes and size 0, or nullopt when max_buffers are out.
  std::optional<ByteBuffer> acquire();
  std::size_t capacity() const;
  std::size_t max_buffers() const;
  // Buffers handed out and not yet returned; the most ever out at once.
  std::size_t outstanding() const;
  std::size_t high_water() const;

 private:
  std::shared_ptr<detail::PoolState> state_;
};

}  // namespace ferry
