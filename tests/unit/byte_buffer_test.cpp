// Tests lib/core/byte_buffer: the pool's bound, reuse of returned storage, buffers
// returned from another thread, moves, copy_of.
#include "lib/core/byte_buffer.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ferry {
namespace {

TEST(BufferPool, NeverHandsOutMoreThanItsBound) {
  BufferPool pool(4096, 3);
  std::vector<ByteBuffer> out;
  for (int i = 0; i < 3; ++i) {
    auto b = pool.acquire();
    ASSERT_TRUE(b);
    EXPECT_EQ(b->capacity(), 4096u);
    EXPECT_EQ(b->size(), 0u);
    out.push_back(std::move(*b));
  }
  EXPECT_FALSE(pool.acquire());
  EXPECT_EQ(pool.outstanding(), 3u);
  out.pop_back();
  EXPECT_EQ(pool.outstanding(), 2u);
  EXPECT_TRUE(pool.acquire());  // one came back (and goes back again at once)
  EXPECT_EQ(pool.high_water(), 3u);
}

TEST(BufferPool, ReusesReturnedStorage) {
  BufferPool pool(1024, 1);
  const std::byte* first = nullptr;
  {
    auto b = pool.acquire();
    ASSERT_TRUE(b);
    first = b->data();
    b->resize(10);
    EXPECT_EQ(b->span().size(), 10u);
  }
  auto again = pool.acquire();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->data(), first);  // no new allocation
  EXPECT_EQ(again->size(), 0u);
}

TEST(BufferPool, BuffersMayComeBackFromAnotherThreadAndOutliveThePool) {
  std::vector<ByteBuffer> held;
  {
    BufferPool pool(512, 8);
    for (int i = 0; i < 8; ++i) held.push_back(std::move(*pool.acquire()));
    std::thread t([&] { held.resize(4); });
    t.join();
    EXPECT_EQ(pool.outstanding(), 4u);
  }
  held.clear();  // the pool object is gone; its shared state is not
}

TEST(ByteBuffer, MovesTransferOwnership) {
  BufferPool pool(64, 2);
  auto a = std::move(*pool.acquire());
  a.resize(5);
  ByteBuffer b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_TRUE(b);
  EXPECT_EQ(b.size(), 5u);
  auto c = std::move(*pool.acquire());
  c = std::move(b);  // c's old storage goes back to the pool
  EXPECT_EQ(pool.outstanding(), 1u);
}

TEST(ByteBuffer, CopyOfIsItsOwn) {
  const std::vector<std::byte> src{std::byte{1}, std::byte{2}, std::byte{3}};
  auto b = ByteBuffer::copy_of(src);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b.data()[2], std::byte{3});
  EXPECT_TRUE(ByteBuffer::copy_of({}).empty());
}

}  // namespace
}  // namespace ferry
