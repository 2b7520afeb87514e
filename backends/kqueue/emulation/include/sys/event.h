/*
 * Stand-in for BSD's <sys/event.h> on Linux: a user-space emulation of kqueue(2) built on
 * epoll, so that corio's kqueue backend (written against the real BSD API, unchanged here)
 * can be compiled and run through its test-suite on Linux until a BSD machine is at hand.
 *
 * It is a test vehicle and must never become a production kqueue: it emulates only the
 * subset the backend needs, with FreeBSD's constants and struct layout, and answers anything
 * outside it with EINVAL (an EV_ERROR entry or -1/errno) instead of approximating it.
 *
 * Supported:
 *   - kqueue(); kevent() with changelist, eventlist, EV_ERROR entries, EV_RECEIPT, timeouts.
 *   - EVFILT_READ / EVFILT_WRITE on descriptors epoll accepts (sockets, pipes, eventfds,
 *     ttys) with EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_ONESHOT, EV_DISPATCH, EV_CLEAR
 *     (all knotes of one descriptor must agree on EV_CLEAR), no NOTE_* fflags.
 *   - EVFILT_USER with NOTE_TRIGGER and NOTE_FFNOP/FFAND/FFOR/FFCOPY.
 * Not emulated (EINVAL): EVFILT_AIO, EVFILT_VNODE, EVFILT_PROC, EVFILT_SIGNAL, EVFILT_TIMER.
 * The deviations from BSD are listed at the top of kqueue_emulation.cpp.
 */
#ifndef CORIO_KQUEUE_EMULATION_SYS_EVENT_H
#define CORIO_KQUEUE_EMULATION_SYS_EVENT_H

/* Treated as the system header it stands in for: the function kevent hiding the struct's
 * name (as on BSD) must not warn in code built with -Wshadow. */
#if defined(__GNUC__)
#pragma GCC system_header
#endif

#include <stdint.h>
#include <time.h>

/* Lets code (tests, mostly) tell the emulation from a real kernel kqueue. */
#define CORIO_KQUEUE_EMULATED 1

#ifdef __cplusplus
extern "C" {
#endif

/* FreeBSD's layout, without the ext[4] extension words. */
struct kevent {
  uintptr_t ident;      /* identifier: a descriptor, or any number for EVFILT_USER */
  short filter;         /* EVFILT_* */
  unsigned short flags; /* EV_* actions on input, EV_* state on output */
  unsigned int fflags;  /* filter-specific flags */
  int64_t data;         /* filter-specific data */
  void* udata;          /* opaque, returned unchanged */
};

/* kevp is evaluated once, so EV_SET(p++, ...) works. The other arguments are assigned
 * without casts, as FreeBSD does, so that code compiling here compiles there too. */
#define EV_SET(kevp, a, b, c, d, e, f)    \
  do {                                    \
    struct kevent* ev_set_kevp_ = (kevp); \
    ev_set_kevp_->ident = (a);            \
    ev_set_kevp_->filter = (b);           \
    ev_set_kevp_->flags = (c);            \
    ev_set_kevp_->fflags = (d);           \
    ev_set_kevp_->data = (e);             \
    ev_set_kevp_->udata = (f);            \
  } while (0)

/* Filters (FreeBSD values). */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_AIO (-3)    /* not emulated */
#define EVFILT_VNODE (-4)  /* not emulated */
#define EVFILT_PROC (-5)   /* not emulated */
#define EVFILT_SIGNAL (-6) /* not emulated */
#define EVFILT_TIMER (-7)  /* not emulated */
#define EVFILT_USER (-11)

/* Actions (input). */
#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008

/* Flags (input, kept on the knote and returned with its events). */
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080

/* Returned values. */
#define EV_EOF 0x8000
#define EV_ERROR 0x4000

/* EVFILT_USER fflags. */
#define NOTE_FFNOP 0x00000000
#define NOTE_FFAND 0x40000000
#define NOTE_FFOR 0x80000000
#define NOTE_FFCOPY 0xc0000000
#define NOTE_FFCTRLMASK 0xc0000000
#define NOTE_FFLAGSMASK 0x00ffffff
#define NOTE_TRIGGER 0x01000000

int kqueue(void);
int kevent(int kq, const struct kevent* changelist, int nchanges, struct kevent* eventlist,
           int nevents, const struct timespec* timeout);

#ifdef __cplusplus
}
#endif

#endif /* CORIO_KQUEUE_EMULATION_SYS_EVENT_H */
