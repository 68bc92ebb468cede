#include "watch.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BATCH = 128 };

struct watch_set {
  uv_loop_t* loop;
  int epfd;
  uv_poll_t poll;      // the set's descriptor on Node's loop
  uv_idle_t idle;      // runs the closed callbacks, a turn later
  watch_t** slots;     // slot → watcher (NULL: free)
  uint32_t* gens;      // slot → generation, bumped when it is freed
  uint32_t* free;      // free slots
  uint32_t nslots, nfree;
  int64_t watched;     // watchers not yet closed: the loop stays alive while there are any
  watch_t* closed_head;
  watch_t* closed_tail;
  watch_after_cb after;
  void* after_data;
  int in_pass;         // inside on_ready's or on_idle's callbacks
  unsigned referenced : 1;
  unsigned after_wanted : 1;
};

static uint64_t key_of(watch_set_t* set, uint32_t slot) { return ((uint64_t)set->gens[slot] << 32) | slot; }

static uint32_t to_epoll(int events) {
  uint32_t e = 0;
  if (events & UV_READABLE) e |= EPOLLIN;
  if (events & UV_WRITABLE) e |= EPOLLOUT;
  return e;
}

// Node's loop is kept alive by the watchers, as it was by their poll handles.
static void keep_alive(watch_set_t* set) {
  int want = set->watched > 0;
  if (want == set->referenced) return;
  set->referenced = want;
  if (want) uv_ref((uv_handle_t*)&set->poll);
  else uv_unref((uv_handle_t*)&set->poll);
}

// The end of a pass: the after callback, as often as it is asked for again.
static void end_pass(watch_set_t* set) {
  while (set->after_wanted) {
    set->after_wanted = 0;
    set->after(set->after_data);
  }
  set->in_pass--;
}

static void on_ready(uv_poll_t* handle, int status, int events) {
  watch_set_t* set = handle->data;
  struct epoll_event ev[BATCH];
  int n;
  do n = epoll_wait(set->epfd, ev, BATCH, 0);
  while (n < 0 && errno == EINTR);
  set->in_pass++;
  for (int i = 0; i < n; i++) {
    uint32_t slot = (uint32_t)ev[i].data.u64;
    uint32_t gen = (uint32_t)(ev[i].data.u64 >> 32);
    // An earlier callback of this batch may have closed it.
    if (slot >= set->nslots || set->gens[slot] != gen || set->slots[slot] == NULL) continue;
    watch_t* w = set->slots[slot];
    uint32_t e = ev[i].events;
    if (e & EPOLLERR) {
      // As uv_poll: the watcher stops, and hears of the error once.
      watch_events(w, 0);
      w->cb(w, UV_EBADF, 0);
      continue;
    }
    // A hang-up alone wakes whatever is watched: the read or write sees it.
    if (e & EPOLLHUP) e |= to_epoll(w->events);
    int uv = 0;
    if ((e & EPOLLIN) && (w->events & UV_READABLE)) uv |= UV_READABLE;
    if ((e & EPOLLOUT) && (w->events & UV_WRITABLE)) uv |= UV_WRITABLE;
    if (uv != 0) w->cb(w, 0, uv);
  }
  end_pass(set);
}

static void on_idle(uv_idle_t* idle) {
  watch_set_t* set = idle->data;
  set->in_pass++;
  // Callbacks may close more watchers, and so may the after callback: they join this queue and run now.
  do {
    while (set->closed_head != NULL) {
      watch_t* w = set->closed_head;
      set->closed_head = w->next_closed;
      if (set->closed_head == NULL) set->closed_tail = NULL;
      w->closed(w);
    }
    while (set->after_wanted) {
      set->after_wanted = 0;
      set->after(set->after_data);
    }
  } while (set->closed_head != NULL);
  set->in_pass--;
  uv_idle_stop(idle);
}

void watch_set_after(watch_set_t* set, watch_after_cb after, void* data) {
  set->after = after;
  set->after_data = data;
  set->after_wanted = 1;
  if (set->in_pass == 0) uv_idle_start(&set->idle, on_idle);
}

watch_set_t* watch_set_new(uv_loop_t* loop) {
  watch_set_t* set = calloc(1, sizeof *set);
  if (set == NULL) return NULL;
  set->loop = loop;
  set->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (set->epfd < 0) {
    int err = errno;
    free(set);
    errno = err;
    return NULL;
  }
  int err = uv_poll_init(loop, &set->poll, set->epfd);
  if (err == 0) err = uv_idle_init(loop, &set->idle);
  if (err == 0) {
    set->poll.data = set;
    set->idle.data = set;
    err = uv_poll_start(&set->poll, UV_READABLE, on_ready);
  }
  if (err != 0) {
    // Never started, or the loop is broken: either way nothing refers to set yet but the loop's handle list.
    close(set->epfd);
    errno = -err;
    return NULL;  // set leaks rather than being freed under handles the loop knows
  }
  // Referenced while anything is watched; the idle handle only runs while closed callbacks wait, which keep the loop too.
  uv_unref((uv_handle_t*)&set->poll);
  return set;
}

static void on_set_closed(uv_handle_t* handle) {
  watch_set_t* set = handle->data;
  if (handle == (uv_handle_t*)&set->poll) {
    uv_close((uv_handle_t*)&set->idle, on_set_closed);
    return;
  }
  close(set->epfd);
  free(set->slots);
  free(set->gens);
  free(set->free);
  free(set);
}

watch_set_t* watch_home_set(watch_home_t* home) {
  if (home->set == NULL) home->set = watch_set_new(home->loop);
  return home->set;
}

void watch_set_free(watch_set_t* set) {
  if (set != NULL) uv_close((uv_handle_t*)&set->poll, on_set_closed);
}

static int take_slot(watch_set_t* set, watch_t* w) {
  if (set->nfree == 0) {
    uint32_t n = set->nslots == 0 ? 64 : set->nslots * 2;
    watch_t** slots = realloc(set->slots, n * sizeof *slots);
    if (slots == NULL) return -ENOMEM;
    set->slots = slots;
    uint32_t* gens = realloc(set->gens, n * sizeof *gens);
    if (gens == NULL) return -ENOMEM;
    set->gens = gens;
    uint32_t* fr = realloc(set->free, n * sizeof *fr);
    if (fr == NULL) return -ENOMEM;
    set->free = fr;
    // Handed out lowest first.
    for (uint32_t s = n; s > set->nslots; s--) {
      set->slots[s - 1] = NULL;
      set->gens[s - 1] = 0;
      set->free[set->nfree++] = s - 1;
    }
    set->nslots = n;
  }
  w->slot = set->free[--set->nfree];
  set->slots[w->slot] = w;
  return 0;
}

int watch_init(watch_set_t* set, watch_t* w, int fd, watch_cb cb) {
  w->set = set;
  w->fd = fd;
  w->cb = cb;
  w->events = 0;
  w->closing = 0;
  w->next_closed = NULL;
  int err = take_slot(set, w);
  if (err != 0) return err;
  set->watched++;
  keep_alive(set);
  return 0;
}

int watch_events(watch_t* w, int events) {
  if (w->closing || events == w->events) return 0;
  watch_set_t* set = w->set;
  struct epoll_event e = {.events = to_epoll(events), .data.u64 = key_of(set, w->slot)};
  // Nothing watched: out of the set, or a hang-up (always reported) would wake it over and over.
  int op = events == 0 ? EPOLL_CTL_DEL : w->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(set->epfd, op, w->fd, &e) != 0) return -errno;
  w->events = events;
  return 0;
}

int watch_error(watch_t* w, int status) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = status < 0 ? 0 : errno;
  return err == 0 && status < 0 ? ECONNRESET : err;
}

static void release_slot(watch_t* w) {
  watch_set_t* set = w->set;
  w->closing = 1;
  w->events = 0;
  set->slots[w->slot] = NULL;
  set->gens[w->slot]++;
  set->free[set->nfree++] = w->slot;
  set->watched--;
  keep_alive(set);
}

void watch_drop(watch_t* w) {
  if (!w->closing) release_slot(w);
}

void watch_move(watch_t* from, watch_t* to, watch_cb cb) {
  watch_set_t* set = from->set;
  to->set = set;
  to->fd = from->fd;
  to->cb = cb;
  to->events = from->events;
  to->slot = from->slot;
  to->closing = 0;
  to->next_closed = NULL;
  set->slots[to->slot] = to;
  from->closing = 1;
  from->events = 0;
}

static void queue_closed(watch_t* w, watch_closed_cb closed) {
  watch_set_t* set = w->set;
  w->closed = closed;
  w->next_closed = NULL;
  if (set->closed_tail == NULL) set->closed_head = w;
  else set->closed_tail->next_closed = w;
  set->closed_tail = w;
  uv_idle_start(&set->idle, on_idle);
}

void watch_close(watch_t* w, watch_closed_cb closed) {
  if (w->closing) return;
  // Still in the set until the caller closes the descriptor; its events find a freed slot.
  release_slot(w);
  queue_closed(w, closed);
}

void watch_closed_later(watch_t* w, watch_closed_cb closed) { queue_closed(w, closed); }

uint64_t watch_key(const watch_t* w) { return key_of(w->set, w->slot); }

watch_t* watch_find(watch_set_t* set, uint64_t key, watch_cb cb) {
  uint32_t slot = (uint32_t)key;
  if (set == NULL || slot >= set->nslots || set->gens[slot] != (uint32_t)(key >> 32)) return NULL;
  watch_t* w = set->slots[slot];
  return w != NULL && w->cb == cb ? w : NULL;
}
