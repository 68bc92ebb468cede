// Descriptor watchers for the relay cores, on an epoll set of their own.
//
// Why not libuv's poll handles: uv_poll_init probes every descriptor with an
// epoll_ctl ADD and DEL and sets O_NONBLOCK again with an ioctl; every
// uv_poll_start begins with an epoll_ctl DEL (ENOENT on a fresh handle);
// stopping is a DEL and starting again an ADD; and the close is a DEL before
// the close(). A session handed to a core cost 10 epoll_ctl calls and 2
// ioctls before its first byte, of the 45 system calls of a whole tunnel
// handshake (nginx: 3 epoll_ctl, 27 calls). Here a descriptor is added once
// when first watched, changed with one MOD when what is watched changes, and
// leaves the set by itself when it is closed (the core holds its only
// descriptor by then), as nginx does.
//
// One epoll set per core, watched by one uv_poll handle on Node's loop: the
// loop wakes for the set, and the set says which descriptors are ready.
// Readiness is level-triggered, as with uv_poll, so the cores keep their
// logic. A watcher is found from its event through a slot table with a
// generation, never through a pointer: an event still queued for a closed
// watcher (or for a descriptor some other process briefly shares) finds a
// stale generation and is dropped.
#ifndef WSGATE_WATCH_H
#define WSGATE_WATCH_H

#include <stdint.h>
#include <uv.h>

typedef struct watch watch_t;
typedef struct watch_set watch_set_t;

// The one set of an environment, shared by the module's parts (so a dialled
// connection can move into a relay core without leaving it), made on first use.
typedef struct watch_home {
  uv_loop_t* loop;
  watch_set_t* set;
} watch_home_t;

// status < 0: the descriptor holds an error (EPOLLERR); the watcher is stopped.
// events: UV_READABLE | UV_WRITABLE, only those asked for.
typedef void (*watch_cb)(watch_t* w, int status, int events);
typedef void (*watch_closed_cb)(watch_t* w);
typedef void (*watch_after_cb)(void* data);

struct watch {
  void* data;
  watch_set_t* set;
  watch_cb cb;
  watch_closed_cb closed;
  watch_t* next_closed;
  int fd;
  int events;        // what the set watches for it: UV_READABLE | UV_WRITABLE, 0 when not in the set
  uint32_t slot;
  unsigned closing : 1;
};

// The set for `loop`, made on first use. NULL when it cannot be made (errno says why).
watch_set_t* watch_set_new(uv_loop_t* loop);
// The home's set, made if need be; NULL when it cannot be.
watch_set_t* watch_home_set(watch_home_t* home);
// Frees the set at the environment's end (its uv_poll handle closes first).
void watch_set_free(watch_set_t* set);

// Watches `fd` for nothing yet; no system call. 0, or -ENOMEM.
int watch_init(watch_set_t* set, watch_t* w, int fd, watch_cb cb);
// Watches for `events` from now on (0: nothing). 0, or a negative errno.
int watch_events(watch_t* w, int events);
// The error a socket's watcher reported (its callback's status < 0): the
// socket's pending error, ECONNRESET when it holds none. With status 0, the
// pending error or 0 (a connect that completed, or not).
int watch_error(watch_t* w, int status);
// Stops watching at once, with no callback; the caller closes the descriptor
// now, or takes it out of the set itself.
void watch_drop(watch_t* w);
// `to` takes over `from`'s descriptor and place in the set (what it watches
// included), with no system call; `from` is done.
void watch_move(watch_t* from, watch_t* to, watch_cb cb);
// Stops watching; the caller closes the descriptor (which takes it out of the
// set). `closed` runs on a later turn of the loop, as a uv_close callback would.
void watch_close(watch_t* w, watch_closed_cb closed);
// `closed` runs on a later turn of the loop for a watcher already dropped or
// moved away: where its owner can free it, once every callback now on the
// stack is done with it.
void watch_closed_later(watch_t* w, watch_closed_cb closed);

// A watcher's key: its slot and the slot's generation. What JavaScript holds
// for a connection of the module (no pointer, no finalizer): a key can
// outlive its watcher, and then finds nothing.
uint64_t watch_key(const watch_t* w);
// The watcher `key` stands for, while it does and its callback is `cb` (a
// watcher that took the slot over with watch_move has another); else NULL.
watch_t* watch_find(watch_set_t* set, uint64_t key, watch_cb cb);
// Runs `after(data)` once at the end of the set's current pass over ready
// descriptors or closed watchers, or outside one on the next turn of the
// loop: callbacks can gather work there and do it once per pass (the
// inspect core hands its sessions' events to JavaScript in one call).
// One after callback per set: the last one asked for.
void watch_set_after(watch_set_t* set, watch_after_cb after, void* data);

#endif
