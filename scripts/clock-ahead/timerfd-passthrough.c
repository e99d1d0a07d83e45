// libfaketime 0.9.10 rewrites every absolute timerfd_settime by the fake offset, even for CLOCK_MONOTONIC and
// CLOCK_BOOTTIME timers with FAKETIME_DONT_FAKE_MONOTONIC=1: the deadline turns negative, the kernel answers
// EINVAL, and libdispatch's timers (so every Task.sleep in Swift) never fire. Preloaded ahead of libfaketime,
// this hands the call to the kernel unchanged; the monotonic clocks are not faked, so the deadline is right.
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

int timerfd_settime(int fd, int flags, const struct itimerspec *new_value, struct itimerspec *old_value) {
  return (int)syscall(SYS_timerfd_settime, fd, flags, new_value, old_value);
}
