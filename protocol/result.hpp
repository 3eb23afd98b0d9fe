// Result<T>: a value or an Error, never an exception across a callback.
//
// Errors are classified by what the caller does next (see Errc); the numeric values
// double as the process exit codes documented in README.md and docs/PROTOCOL.md.
//
//   Result<int> parse(std::string_view s);
//   auto r = parse("12");
//   if (!r) { std::cerr << r.error().message() << '\n'; return r.error().exit_code(); }
//   use(*r);
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

// What went wrong, by what the caller does about it. Values are exit codes.
enum class Errc {
  usage = 2,         // bad command line or address: fatal, fix the invocation
  connection = 3,    // could not connect, connection lost, idle timeout: retryable
  protocol = 4,      // the peer violated the protocol or speaks no common version: peer violation
  local_io = 5,      // a local file operation failed (open, read, write, fsync, rename): fatal for that file
  verification = 6,  // a file's whole-file digest did not match after the allowed re-sends
  partial = 7,       // the transfer ended with some files refused or failed
  authentication = 8,  // keys differ, or one side has none: fatal, no reconnect can help
  internal = 70,     // a broken invariant of ferry's own
};

const char* errc_name(Errc c);

struct Error {
  Errc code = Errc::internal;
  std::string what;   // the operation and its subject, e.g. "open(/dest/a.txt)"
  int sys_errno = 0;  // errno (positive) when an OS call failed, else 0

  // One line: "what: strerror(errno)" or just "what".
  std::string message() const {
    if (sys_errno == 0) return what;
    return what + ": " + std::strerror(sys_errno);
  }
  int exit_code() const { return static_cast<int>(code); }
};

inline Error make_error(Errc c, std::string what, int sys_errno = 0) {
  return Error{c, std::move(what), sys_errno};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}
  explicit operator bool() const { return v_.index() == 0; }
  bool ok() const { return v_.index() == 0; }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}
  explicit operator bool() const { return ok_; }
  bool ok() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

inline const char* errc_name(Errc c) {
  switch (c) {
    case Errc::usage: return "usage";
    case Errc::connection: return "connection";
    case Errc::protocol: return "protocol";
    case Errc::local_io: return "local-io";
    case Errc::verification: return "verification";
    case Errc::partial: return "partial";
    case Errc::authentication: return "authentication";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

}  // namespace ferry
