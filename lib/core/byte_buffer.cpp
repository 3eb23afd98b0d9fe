#include "lib/core/byte_buffer.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

namespace ferry {

namespace detail {
struct PoolState {
  std::size_t capacity;
  std::size_t max_buffers;
  std::mutex mu;
  std::vector<std::unique_ptr<std::byte[]>> free;  // guarded by mu
  std::size_t outstanding = 0;                      // guarded by mu
  std::size_t high_water = 0;                       // guarded by mu
};
}  // namespace detail

ByteBuffer::ByteBuffer(ByteBuffer&& o) noexcept
    : storage_(std::move(o.storage_)),
      size_(std::exchange(o.size_, 0)),
      capacity_(std::exchange(o.capacity_, 0)),
      pool_(std::move(o.pool_)) {}

ByteBuffer& ByteBuffer::operator=(ByteBuffer&& o) noexcept {
  if (this != &o) {
    release();
    storage_ = std::move(o.storage_);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    pool_ = std::move(o.pool_);
  }
  return *this;
}

ByteBuffer::~ByteBuffer() { release(); }

ByteBuffer ByteBuffer::copy_of(std::span<const std::byte> bytes) {
  ByteBuffer b;
  b.storage_ = std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(bytes.size(), 1));
  b.capacity_ = bytes.size();
  b.size_ = bytes.size();
  if (!bytes.empty()) std::memcpy(b.storage_.get(), bytes.data(), bytes.size());
  return b;
}

void ByteBuffer::resize(std::size_t n) {
  assert(n <= capacity_);
  size_ = std::min(n, capacity_);
}

void ByteBuffer::release() {
  if (!pool_) {
    storage_.reset();
    return;
  }
  std::lock_guard<std::mutex> lock(pool_->mu);
  if (storage_) pool_->free.push_back(std::move(storage_));
  --pool_->outstanding;
  pool_.reset();
  size_ = capacity_ = 0;
}

BufferPool::BufferPool(std::size_t capacity, std::size_t max_buffers)
    : state_(std::make_shared<detail::PoolState>()) {
  state_->capacity = capacity;
  state_->max_buffers = max_buffers;
}

std::optional<ByteBuffer> BufferPool::acquire() {
  ByteBuffer b;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->outstanding >= state_->max_buffers) return std::nullopt;
    ++state_->outstanding;
    state_->high_water = std::max(state_->high_water, state_->outstanding);
    if (!state_->free.empty()) {
      b.storage_ = std::move(state_->free.back());
      state_->free.pop_back();
    }
  }
  // Allocated outside the lock, once per buffer for the pool's life, uninitialised.
  if (!b.storage_) b.storage_ = std::make_unique_for_overwrite<std::byte[]>(state_->capacity);
  b.capacity_ = state_->capacity;
  b.pool_ = state_;
  return b;
}

std::size_t BufferPool::capacity() const { return state_->capacity; }
std::size_t BufferPool::max_buffers() const { return state_->max_buffers; }

std::size_t BufferPool::outstanding() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->outstanding;
}

std::size_t BufferPool::high_water() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->high_water;
}

}  // namespace ferry
