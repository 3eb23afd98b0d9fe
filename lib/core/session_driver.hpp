// The one loop that carries a sans-I/O session's output to its driver.
//
// A session (sender/sender_session.hpp, receiver/receiver_session.hpp) queues actions
// (send this frame, read that chunk, write, close) and events (a file verified, a
// warning) while it is fed. Its driver must hand every action to the code that
// performs it and every event to the sink, and keep doing so while performing makes
// more: a step may complete at once (a CheckSource answered from memory, a WriteChunk
// to a file already open, a read that failed to start) and feed the session again.
// drive() is that loop. The executables' engines (sender/sender.cpp,
// receiver/receiver.cpp) and the link simulator (tests/sim/link_sim.cpp) all use it, so
// the simulator tests the loop the executables run.
//
//   drive(session,
//         [&](sender::Action& a) { perform(a); },   // may feed `session` again
//         [&](const Event& e) { sink.emit(e); });
//   if (session.finished()) ...;                     // else arm a timer from
//   else arm(session.next_deadline());               // session.next_deadline()
//
// Sans-I/O: the standard library only, like the sessions themselves.
#pragma once

namespace ferry {

// What drive() needs of a session: it hands out what it queued, in order.
template <class Session>
concept DrivenSession = requires(Session& s) {
  s.take_actions();
  s.take_events();
};

// Repeats { take the actions, hand each to `perform`; take the events, hand each to
// `on_event` } until a round finds neither, i.e. until the session has nothing left.
//
// Contract:
// - `perform` and `on_event` may feed the session (a step that completes at once):
//   what that queues is handed out by a later round of the same call, after the
//   rest of the current round. They must not call drive() on the same session: a
//   driver whose I/O layer reports closes and completions on a later loop turn
//   (lib/net/connection.hpp) never needs to.
// - Events taken in a round include those queued while that round's actions ran.
// - Returns when the session is quiet; the caller then looks at its state (finished,
//   next deadline). Sessions never throw; nor may the callables.
template <DrivenSession Session, class Perform, class OnEvent>
void drive(Session& session, Perform&& perform, OnEvent&& on_event) {
  for (;;) {
    auto actions = session.take_actions();
    for (auto& action : actions) perform(action);
    auto events = session.take_events();
    for (auto& event : events) on_event(event);
    if (actions.empty() && events.empty()) return;
  }
}

}  // namespace ferry
