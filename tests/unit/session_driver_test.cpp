// Tests lib/core/session_driver: drive() with a fake session whose actions are
// numbers and whose events are strings. Covers the order of actions and events, steps
// that complete at once and feed the session again (handed out by a later round,
// after the rest of the current one), events queued while actions run, a quiet
// session, and a chain of synchronous completions.
#include "lib/core/session_driver.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ferry {
namespace {

struct FakeSession {
  std::vector<int> actions;
  std::vector<std::string> events;
  int take_calls = 0;

  std::vector<int> take_actions() {
    ++take_calls;
    return std::exchange(actions, {});
  }
  std::vector<std::string> take_events() { return std::exchange(events, {}); }
};

// Drives `s`, recording what it hands out in one sequence ("a<n>" per action, "e:<x>"
// per event); `then(a)` runs after each action is recorded (to feed the session).
std::vector<std::string> drive_logged(FakeSession& s, const std::function<void(int)>& then = [](int) {}) {
  std::vector<std::string> seen;
  drive(
      s,
      [&](int& a) {
        seen.push_back("a" + std::to_string(a));
        then(a);
      },
      [&](const std::string& e) { seen.push_back("e:" + e); });
  return seen;
}

TEST(SessionDriver, QuietSessionTakesOneRound) {
  FakeSession s;
  EXPECT_TRUE(drive_logged(s).empty());
  EXPECT_EQ(s.take_calls, 1);
}

TEST(SessionDriver, ActionsInOrderThenEvents) {
  FakeSession s;
  s.actions = {1, 2, 3};
  s.events = {"x", "y"};
  EXPECT_EQ(drive_logged(s), (std::vector<std::string>{"a1", "a2", "a3", "e:x", "e:y"}));
  EXPECT_EQ(s.take_calls, 2);  // the second round finds nothing
}

TEST(SessionDriver, EventsQueuedByActionsComeInTheSameRound) {
  FakeSession s;
  s.actions = {1, 2};
  const auto seen = drive_logged(s, [&](int a) { s.events.push_back("after" + std::to_string(a)); });
  EXPECT_EQ(seen, (std::vector<std::string>{"a1", "a2", "e:after1", "e:after2"}));
}

// A step that completes at once (the old `again_` flag's case): what it queues comes
// after the rest of the current round, and its events after that round's events.
TEST(SessionDriver, SynchronousCompletionRunsInALaterRound) {
  FakeSession s;
  s.actions = {1, 2};
  const auto seen = drive_logged(s, [&](int a) {
    if (a != 1) return;
    s.actions.push_back(10);  // completed at once: the session asks for more
    s.events.push_back("done1");
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"a1", "a2", "e:done1", "a10"}));
  EXPECT_EQ(s.take_calls, 3);
}

TEST(SessionDriver, EventSinkMayFeedTheSession) {
  FakeSession s;
  s.events = {"start"};
  std::vector<std::string> seen;
  drive(
      s, [&](int& a) { seen.push_back("a" + std::to_string(a)); },
      [&](const std::string& e) {
        seen.push_back("e:" + e);
        if (e == "start") s.actions.push_back(7);
      });
  EXPECT_EQ(seen, (std::vector<std::string>{"e:start", "a7"}));
}

TEST(SessionDriver, ChainOfCompletionsEndsWhenTheSessionIsQuiet) {
  FakeSession s;
  s.actions = {0};
  int performed = 0;
  drive(
      s,
      [&](int& a) {
        ++performed;
        if (a < 99) s.actions.push_back(a + 1);
      },
      [](const std::string&) {});
  EXPECT_EQ(performed, 100);
  EXPECT_TRUE(s.actions.empty());
}

// Actions are handed out by reference: the performer may move a frame's bytes out.
TEST(SessionDriver, PerformerMayMoveFromTheAction) {
  struct MoveSession {
    std::vector<std::string> actions{"payload"};
    std::vector<int> take_events() { return {}; }
    std::vector<std::string> take_actions() { return std::exchange(actions, {}); }
  } s;
  std::string got;
  drive(s, [&](std::string& a) { got = std::move(a); }, [](int) {});
  EXPECT_EQ(got, "payload");
}

}  // namespace
}  // namespace ferry
