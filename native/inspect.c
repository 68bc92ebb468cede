// wsgate's inspect-mode relay core.
//
// Why: in inspect mode every read used to cost a trip into JavaScript (the
// read callback, the frame walk, the write), which put the gateway at 1.28×
// nginx's CPU per relayed message where tunnel mode, relayed by
// native/relay.c, is at 0.95×. Most of what inspect mode does per read is
// mechanical: walk the frame headers, count, and forward the bytes as read.
// So after the 101 an inspect session on plain TCP is handed to this core,
// like a tunnel: it owns duplicates of both descriptors, reads them on
// Node's event loop (watch.c's epoll set), follows the frames both ways and
// writes the bytes it read straight to the other side, from the buffer they
// were read into. JavaScript (src/relay/native-inspect.ts, deciding through
// inspect-session.ts) hears only what needs a decision: a Close frame sent or
// received, a rule broken, a connection ended or closed. It writes into the
// session only frames of its own (pings, Close frames), through inject().
// Events are handed over after each read, never in the middle of one, so
// JavaScript cannot re-enter the core while a read is half done. That is
// also why pings and pongs are not handed over: the JavaScript relay's one
// decision on them (leave out the pongs answering the gateway's own pings,
// recognized by keepalive.ts's tag) falls in the middle of a read, before
// the bytes around them are written, and costs a 6-byte compare here.
//
// The rules are those of the JavaScript path, to the byte, because the
// tests hold both paths to the same verdicts, bytes and counters:
// - The frames are followed by frame-tracker.c, src/relay/frame-parser.ts's
//   state machine with its events, error codes and texts, which also checks
//   UTF-8 as utf8-stream.ts does. The per-read logic here (process()) is
//   Flow.chunk in src/relay/inspect-flow.ts: where a chunk is cut when a
//   rule is broken, which gateway pongs are left out, where a frame of the
//   gateway's own goes (the first frame boundary), the unfinished header or
//   control frame held back (at most 131 bytes, so a Close can always follow
//   whatever rule that frame breaks), and the padding that finishes a text
//   frame found not UTF-8 after its head went out.
// - The message rate is message-rate.ts's token bucket, charged as a message
//   begins. Its clock is the loop's (uv_now), not the JavaScript buckets'
//   20 ms tick: the same coarse, read-free clock.
// - Message sizes go straight into the RelayTally's arrays (the metrics'
//   histogram), whose memory this core holds a reference to: no call per
//   message.
// - The connections' ends follow what the JavaScript relay gets from its
//   sockets (src/relay/bare-conn.ts): a FIN read is reported; the upstream,
//   which does not allow half-open connections, has its write side ended
//   first; end() sends FIN once everything queued is out; hangUp() closes at
//   once when nothing is queued; destroy() closes now; 'closed' is reported
//   from the watcher's closed callback, a turn of the loop later, as a
//   socket's 'close' is. Once both sides are closed, the session is freed.
//
// No copies on the way through: a read goes into a buffer with room for the
// held-back bytes in front of it, so a frame begun in an earlier read is
// contiguous with the rest; the pieces to forward point into that buffer and
// are written with one sendmsg. What the socket does not take keeps the
// buffer (reference counted) and reading from the other side stops until it
// is out, as in relay.c: a session holds at most one read per direction
// beyond the kernel's socket buffers, plus frames of the gateway's own.

#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "frame-tracker.h"
#include "conn.h"
#include "dial.h"
#include "inspect.h"
#include "watch.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

enum {
  READ_MAX = 65536,
  READS_PER_WAKE = 16,
  /** Most bytes held back: a control frame, its header (2 + 4-byte key) and payload (125). */
  MAX_HELD = 131,
  HEADROOM = 136,
  READ_BUF = HEADROOM + READ_MAX,
  /** Most padding written to finish a text frame that turned out not UTF-8 halfway. */
  MAX_PAD = 64 * 1024,
  ZEROS_LEN = 16 * 1024,
  IOV_BATCH = 64,
  EV_MAX = 16,
  /** Events handed to JavaScript in one call, and the numbers of each (native-inspect.ts's BATCH_*). */
  BATCH_EVENTS = 256,
  BATCH_INTS = 6,
};

// Events to JavaScript (kept in step with native-inspect.ts).
enum { EV_CLOSE_WRITTEN = 1, EV_CLOSE_RECEIVED = 2, EV_VIOLATION = 3, EV_EOF = 4, EV_CLOSED = 5 };
// Which rule a violation broke: the tracker's, the message rate, UTF-8.
enum { RULE_TRACKER = 0, RULE_RATE = 1, RULE_UTF8 = 2 };
enum { IO_READ = 0, IO_WRITE = 1, IO_SHUTDOWN = 2 };

/** A cut inside a frame whose head has gone out; also "no position" (inspect-flow.ts's STUCK and NONE). */
#define STUCK ((int64_t)-0x40000000)
#define NONE STUCK

static const uint8_t ZEROS[ZEROS_LEN];

typedef struct imod imod_t;
typedef struct ipair ipair_t;

/** A buffer pieces of output point into: a read, or a frame of the gateway's own. */
typedef struct rbuf {
  int refs;
  uint32_t size;
  struct rbuf* next;  // in a flow's queue of frames waiting for a boundary
  uint8_t data[];
} rbuf_t;

/** Output a socket did not take yet. */
typedef struct seg {
  struct seg* next;
  rbuf_t* owner;  // NULL: static memory
  const uint8_t* p;
  size_t len;
} seg_t;

/** A piece of output being built: `owner` is referenced when queued; `copy`: copied when queued. */
typedef struct piece {
  const uint8_t* p;
  size_t len;
  rbuf_t* owner;
  int release;  // drop one reference to owner once sent or queued
  int copy;
} piece_t;

struct imod {
  napi_ref event;
  napi_ref batch_fn;
  napi_ref batch_ref;  // the Int32Array `batch` points into
  int32_t* batch;
  ipair_t* pending;    // sessions with events to deliver at the end of the watch set's pass
  napi_async_context async;
  uv_loop_t* loop;
  watch_home_t* home;  // relay.c's: one watch set for the module
  rbuf_t* spare;
  int64_t open;
  piece_t* pieces;
  int npieces, cap;
};

typedef struct iside {
  ipair_t* pair;
  int fd;
  watch_t watch;  // watch.events: what is watched
  seg_t* head;
  seg_t* tail;
  unsigned eof : 1;          // the peer's FIN was read
  unsigned eof_emitted : 1;  // and reported
  unsigned wr_ended : 1;     // end(): nothing more is written, FIN once the queue is out
  unsigned finished : 1;     // our FIN is out (or goes with the close)
  unsigned closing : 1;      // destroyed: the descriptor is closed, the watcher closing
  unsigned half_open : 1;    // allows a half-open connection (the client, as HTTP servers do)
  int err, err_op;
} iside_t;

typedef struct flow {
  ipair_t* pair;
  int from_client;
  iside_t* src;
  iside_t* dst;
  tracker_t t;
  tracker_events_t ev;
  double per_ms, burst, tokens, last;
  int utf8_on;
  utf8_t u8;
  double* sizes;
  double bytes, messages;
  unsigned heard : 1;
  unsigned out_closed : 1;
  unsigned failed : 1;
  unsigned stuck : 1;
  unsigned close_queued : 1;
  rbuf_t* q_head;
  rbuf_t* q_tail;
  // Set by the tracker's events during one scan, reset after the chunk.
  int64_t close_start, close_end;
  int close_code;
  int64_t rate_cut;
  int64_t* drops;
  int ndrops, cap_drops;
  int64_t drop_bytes;
  int utf8_bad;
  int64_t utf8_cut, text_frame_start, text_phase;
  int64_t pad_len;
  uint8_t pad_byte;
  uint8_t* held;  // MAX_HELD bytes, allocated by the first cut inside a frame's head
  int held_len;
} flow_t;

typedef struct ievent {
  int kind, side, code, a, b;
  const char* ecode;
  char text[128];
} ievent_t;

struct ipair {
  imod_t* mod;
  napi_env env;
  napi_ref owner;
  int32_t slot;  // the owner's index in JavaScript's table, for batches
  napi_ref sizes_ref[2];
  iside_t side[2];  // 0: client, 1: upstream
  flow_t flow[2];   // 0: client → upstream, 1: upstream → client
  size_t read_size;
  int client_bare;
  int closed_sides;
  unsigned active : 1;
  unsigned pending : 1;     // on mod->pending
  unsigned free_later : 1;  // both sides are closed: freed once the events are delivered
  int delivering;
  int batch_eof;  // the side whose FIN is in the batch, or -1
  ipair_t* next_pending;
  ipair_t* next_batched;
  int nev;
  // Allocated by the first event and freed once they are delivered: an idle
  // session holds none (EV_MAX of them would be most of its memory).
  ievent_t* ev;
};

static void on_ready(watch_t* w, int status, int events);
static void side_destroy(iside_t* s, int err, int op);
static void repoll(iside_t* s);

static int side_index(iside_t* s) { return s == &s->pair->side[0] ? 0 : 1; }
static iside_t* peer_of(iside_t* s) { return &s->pair->side[1 - side_index(s)]; }
/** The flow reading from `s`. */
static flow_t* flow_from(iside_t* s) { return &s->pair->flow[side_index(s)]; }
/** The flow writing toward side `i`. */
static flow_t* flow_to(ipair_t* p, int i) { return &p->flow[1 - i]; }

// ---- buffers -----------------------------------------------------------------

static rbuf_t* rbuf_new(imod_t* mod, size_t size) {
  if (size == READ_BUF && mod->spare != NULL) {
    rbuf_t* b = mod->spare;
    mod->spare = NULL;
    b->refs = 1;
    b->next = NULL;
    return b;
  }
  rbuf_t* b = malloc(sizeof *b + size);
  if (b == NULL) return NULL;
  b->refs = 1;
  b->size = (uint32_t)size;
  b->next = NULL;
  return b;
}

static void rbuf_release(imod_t* mod, rbuf_t* b) {
  if (b == NULL || --b->refs > 0) return;
  if (b->size == READ_BUF && mod->spare == NULL) mod->spare = b;
  else free(b);
}

static rbuf_t* rbuf_copy(imod_t* mod, const uint8_t* p, size_t len) {
  rbuf_t* b = rbuf_new(mod, len > 0 ? len : 1);
  if (b != NULL) memcpy(b->data, p, len);
  return b;
}

// ---- events to JavaScript -------------------------------------------------------

static void flush_events(void* data);

static ievent_t* push_event(ipair_t* p, int kind, int side) {
  // At most a few per pass over the watch set (a Close written, then a
  // violation or a Close written and one received, a FIN, the closes),
  // delivered at its end: EV_MAX is never reached.
  if (p->ev == NULL && (p->ev = malloc(EV_MAX * sizeof *p->ev)) == NULL)
    napi_fatal_error("wsgate inspect", NAPI_AUTO_LENGTH, "out of memory", NAPI_AUTO_LENGTH);
  if (!p->pending) {
    imod_t* mod = p->mod;
    p->pending = 1;
    p->next_pending = mod->pending;
    mod->pending = p;
    watch_set_after(mod->home->set, flush_events, mod);
  }
  ievent_t* e = &p->ev[p->nev < EV_MAX ? p->nev++ : EV_MAX - 1];
  e->kind = kind;
  e->side = side;
  e->code = e->a = e->b = 0;
  e->ecode = NULL;
  e->text[0] = 0;
  return e;
}

/** What a handler threw is the process's uncaught exception, as an event listener's is. */
static void uncaught(napi_env env, napi_status status) {
  if (status != napi_pending_exception) return;
  napi_value err;
  napi_get_and_clear_last_exception(env, &err);
  napi_fatal_exception(env, err);
}

static void call_js(ipair_t* p, int in_js, const ievent_t* e) {
  napi_env env = p->env;
  imod_t* mod = p->mod;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value owner, fn, result, argv[8];
  napi_get_reference_value(env, p->owner, &owner);
  napi_get_reference_value(env, mod->event, &fn);
  argv[0] = owner;
  napi_create_int32(env, e->kind, &argv[1]);
  napi_create_int32(env, e->side, &argv[2]);
  napi_create_int32(env, e->code, &argv[3]);
  napi_create_int32(env, e->a, &argv[4]);
  napi_create_int32(env, e->b, &argv[5]);
  if (e->text[0] != 0) napi_create_string_utf8(env, e->text, NAPI_AUTO_LENGTH, &argv[6]);
  else napi_get_null(env, &argv[6]);
  if (e->ecode != NULL) napi_create_string_utf8(env, e->ecode, NAPI_AUTO_LENGTH, &argv[7]);
  else napi_get_null(env, &argv[7]);
  napi_status status;
  // From the event loop, make_callback: the nextTicks and microtasks the
  // handler queues run after it. From a call out of JavaScript, a plain call.
  if (in_js) status = napi_call_function(env, owner, fn, 8, argv, &result);
  else status = napi_make_callback(env, mod->async, owner, fn, 8, argv, &result);
  uncaught(env, status);
  napi_close_handle_scope(env, scope);
}

static void side_end(iside_t* s);

/** Hands the session's events to JavaScript, one call each, in order. */
static void deliver(ipair_t* p, int in_js) {
  if (p->delivering) return;
  p->delivering = 1;
  for (int i = 0; i < p->nev; i++) {
    ievent_t e = p->ev[i];
    if (e.kind == EV_EOF) {
      // As a socket reports its peer's FIN (bare-conn.ts's ended()): not
      // once destroyed; a connection that does not allow half-open ends its
      // write side first; once both FINs are through, it is closed.
      iside_t* s = &p->side[e.side];
      if (s->closing) continue;
      s->eof_emitted = 1;
      if (!s->half_open) side_end(s);
      call_js(p, in_js, &e);
      if (s->finished) side_destroy(s, 0, 0);
      continue;
    }
    call_js(p, in_js, &e);
  }
  p->nev = 0;
  free(p->ev);
  p->ev = NULL;
  p->delivering = 0;
}

static void free_pair(ipair_t* p);

/**
 * Texts go on their own (deliver()), and so does a FIN among other events:
 * the core acts around its handler, between the handlers of the others. A
 * FIN alone can join the batch (flush_events() and call_batch() act for it).
 */
static int deliver_alone(const ipair_t* p) {
  for (int i = 0; i < p->nev; i++)
    if ((p->ev[i].kind == EV_EOF && p->nev > 1) || p->ev[i].text[0] != 0 || p->ev[i].ecode != NULL) return 1;
  return 0;
}

/** A session whose events were handed over, unless more came meanwhile. */
static void delivered(ipair_t* p) {
  if (p->free_later && !p->pending) free_pair(p);
}

/**
 * fn(n): the batch's n events, BATCH_INTS numbers each (kind, side, code,
 * a, b, the session's slot). Then the events its handlers caused (held
 * back meanwhile, as deliver() holds back those of its own handlers).
 */
static void call_batch(imod_t* mod, napi_env env, int n, ipair_t* batched) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv, argv[1], result;
  napi_get_reference_value(env, mod->batch_fn, &fn);
  // make_callback's receiver is an object.
  napi_get_global(env, &recv);
  napi_create_int32(env, n, &argv[0]);
  uncaught(env, napi_make_callback(env, mod->async, recv, fn, 1, argv, &result));
  napi_close_handle_scope(env, scope);
  for (ipair_t *p = batched, *next; p != NULL; p = next) {
    next = p->next_batched;
    p->delivering = 0;
    if (p->batch_eof >= 0) {
      // As deliver() does after a FIN's handler.
      iside_t* s = &p->side[p->batch_eof];
      p->batch_eof = -1;
      if (s->finished) side_destroy(s, 0, 0);
    }
    if (p->nev > 0) deliver(p, 0);
    delivered(p);
  }
}

// The events of a pass over the watch set, every session's, go to
// JavaScript in one call: a make_callback costs as much as the handlers
// (a clean close is 7 events, each a call of its own before).
static void flush_events(void* data) {
  imod_t* mod = data;
  while (mod->pending != NULL) {
    ipair_t* list = mod->pending;
    mod->pending = NULL;
    napi_env env = list->env;
    ipair_t* batched = NULL;
    int n = 0;
    for (ipair_t *p = list, *next; p != NULL; p = next) {
      next = p->next_pending;
      p->pending = 0;
      if (p->nev == 0 || deliver_alone(p)) {
        if (p->nev > 0) deliver(p, 0);
        delivered(p);
        continue;
      }
      if (p->ev[0].kind == EV_EOF) {
        // As deliver() does before a FIN's handler (the FIN is the only event).
        iside_t* s = &p->side[p->ev[0].side];
        if (s->closing) {
          p->nev = 0;
          free(p->ev);
          p->ev = NULL;
          delivered(p);
          continue;
        }
        s->eof_emitted = 1;
        if (!s->half_open) side_end(s);
      }
      if (n + p->nev > BATCH_EVENTS) {
        call_batch(mod, env, n, batched);
        batched = NULL;
        n = 0;
      }
      p->batch_eof = p->ev[0].kind == EV_EOF ? p->ev[0].side : -1;
      for (int i = 0; i < p->nev; i++, n++) {
        const ievent_t* e = &p->ev[i];
        int32_t* q = mod->batch + (size_t)n * BATCH_INTS;
        q[0] = e->kind;
        q[1] = e->side;
        q[2] = e->code;
        q[3] = e->a;
        q[4] = e->b;
        q[5] = p->slot;
      }
      p->nev = 0;
      free(p->ev);
      p->ev = NULL;
      p->delivering = 1;
      p->next_batched = batched;
      batched = p;
    }
    if (n > 0) call_batch(mod, env, n, batched);
  }
}

// ---- sockets -------------------------------------------------------------------

static void seg_free_all(imod_t* mod, iside_t* s) {
  seg_t* g = s->head;
  while (g != NULL) {
    seg_t* next = g->next;
    rbuf_release(mod, g->owner);
    free(g);
    g = next;
  }
  s->head = s->tail = NULL;
}

/** Reading `s` stops while the flow from it has output waiting toward the other side (backpressure). */
static int can_read(iside_t* s) {
  return !s->eof && !s->closing && (flow_from(s)->out_closed || peer_of(s)->head == NULL);
}

static void repoll(iside_t* s) {
  if (s->closing) return;
  int events = 0;
  if (can_read(s)) events |= UV_READABLE;
  if (s->head != NULL || (s->wr_ended && !s->finished)) events |= UV_WRITABLE;
  int err = watch_events(&s->watch, events);
  if (err != 0) side_destroy(s, -err, IO_READ);
}

static void on_side_closed(watch_t* w);

/** The connection is closed now; 'closed' follows from the close callback. */
static void side_destroy(iside_t* s, int err, int op) {
  if (s->closing) return;
  ipair_t* p = s->pair;
  s->closing = 1;
  s->err = err;
  s->err_op = op;
  // The close takes the descriptor out of the watch set.
  watch_close(&s->watch, on_side_closed);
  close(s->fd);
  s->fd = -1;
  seg_free_all(p->mod, s);
  // The other side may have stopped reading for this one's output.
  repoll(peer_of(s));
}

/** Our FIN is out (or goes with the close): once the peer's FIN was reported too, the connection is closed. */
static void side_finished(iside_t* s) {
  s->finished = 1;
  if (s->eof_emitted) side_destroy(s, 0, 0);
}

static void side_shutdown(iside_t* s) {
  if (shutdown(s->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
    side_destroy(s, errno, IO_SHUTDOWN);
    return;
  }
  side_finished(s);
}

/**
 * FIN once everything queued is out (bare-conn.ts's end()): from flush(),
 * when the socket is next writable, as libuv does a shutdown request.
 */
static void side_end(iside_t* s) {
  if (s->closing || s->wr_ended) return;
  s->wr_ended = 1;
  // The peer's FIN is in and nothing is queued: the close that follows sends ours.
  if (s->eof && s->head == NULL) side_finished(s);
  else repoll(s);
}

/** Closed at once when nothing is queued (bare-conn.ts's hangUp()), else end(). */
static void side_hangup(iside_t* s) {
  if (s->closing || s->wr_ended) return;
  if (s->head != NULL) {
    side_end(s);
    return;
  }
  s->wr_ended = 1;
  side_destroy(s, 0, 0);
}

static void flush(iside_t* s) {
  imod_t* mod = s->pair->mod;
  while (s->head != NULL) {
    struct iovec iov[IOV_BATCH];
    int k = 0;
    size_t total = 0;
    for (seg_t* g = s->head; g != NULL && k < IOV_BATCH; g = g->next, k++) {
      iov[k].iov_base = (void*)g->p;
      iov[k].iov_len = g->len;
      total += g->len;
    }
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)k;
    ssize_t n = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) side_destroy(s, errno, IO_WRITE);
      return;
    }
    size_t left = (size_t)n;
    while (left > 0 && s->head != NULL) {
      seg_t* g = s->head;
      if (left < g->len) {
        g->p += left;
        g->len -= left;
        left = 0;
        break;
      }
      left -= g->len;
      s->head = g->next;
      if (s->head == NULL) s->tail = NULL;
      rbuf_release(mod, g->owner);
      free(g);
    }
    if ((size_t)n < total) break;
  }
  if (s->head == NULL && s->wr_ended && !s->finished) {
    side_shutdown(s);
    if (s->closing) return;
  }
  repoll(s);
  repoll(peer_of(s));
}

static int queue_piece(imod_t* mod, iside_t* s, const piece_t* pc, size_t off) {
  seg_t* g = malloc(sizeof *g);
  if (g == NULL) return -1;
  g->next = NULL;
  g->p = pc->p + off;
  g->len = pc->len - off;
  g->owner = pc->owner;
  if (pc->copy) {
    g->owner = rbuf_copy(mod, g->p, g->len);
    if (g->owner == NULL) {
      free(g);
      return -1;
    }
    g->p = g->owner->data;
  } else if (g->owner != NULL) {
    g->owner->refs++;
  }
  if (s->tail != NULL) s->tail->next = g;
  else s->head = g;
  s->tail = g;
  return 0;
}

/**
 * Writes the pieces to `s`: what the socket takes now, the rest queued in
 * order behind it (reading the other side then stops until it is out). A
 * connection ended or destroyed takes nothing more.
 */
static void side_send(iside_t* s, piece_t* pc, int n) {
  imod_t* mod = s->pair->mod;
  int i = 0;
  size_t off = 0;
  if (s->closing || s->wr_ended) goto done;
  if (s->head == NULL && n == 1) {
    // The common case, a read forwarded whole: send(), a little cheaper in the kernel than sendmsg().
    ssize_t w;
    do w = send(s->fd, pc[0].p, pc[0].len, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      side_destroy(s, errno, IO_WRITE);
      goto done;
    }
    if (w == (ssize_t)pc[0].len) i = 1;
    else if (w > 0) off = (size_t)w;
  } else if (s->head == NULL) {
    while (i < n) {
      struct iovec iov[IOV_BATCH];
      int k = 0;
      size_t total = 0;
      for (int j = i; j < n && k < IOV_BATCH; j++, k++) {
        size_t o = j == i ? off : 0;
        iov[k].iov_base = (void*)(pc[j].p + o);
        iov[k].iov_len = pc[j].len - o;
        total += pc[j].len - o;
      }
      struct msghdr msg = {0};
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)k;
      ssize_t w = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        side_destroy(s, errno, IO_WRITE);
        goto done;
      }
      size_t left = (size_t)w;
      while (left > 0 && i < n) {
        size_t avail = pc[i].len - off;
        if (left >= avail) {
          left -= avail;
          i++;
          off = 0;
        } else {
          off += left;
          left = 0;
        }
      }
      if ((size_t)w < total) break;
    }
  }
  for (; i < n; i++, off = 0) {
    if (queue_piece(mod, s, &pc[i], off) != 0) {
      side_destroy(s, ENOMEM, IO_WRITE);
      break;
    }
  }
done:
  for (int j = 0; j < n; j++) {
    if (pc[j].release) rbuf_release(mod, pc[j].owner);
  }
  if (!s->closing) {
    repoll(s);
    repoll(peer_of(s));
  }
}

// ---- pieces of output -------------------------------------------------------------

static void add_piece(imod_t* mod, const uint8_t* p, size_t len, rbuf_t* owner, int release, int copy) {
  if (len == 0) {
    if (release) rbuf_release(mod, owner);
    return;
  }
  if (mod->npieces == mod->cap) {
    int cap = mod->cap == 0 ? 16 : mod->cap * 2;
    piece_t* np = realloc(mod->pieces, (size_t)cap * sizeof *np);
    if (np == NULL) {
      // Out of memory: the piece is lost, and with it the stream; the
      // connection is cut where it stands rather than corrupted.
      if (release) rbuf_release(mod, owner);
      mod->npieces = -1;
      return;
    }
    mod->pieces = np;
    mod->cap = cap;
  }
  if (mod->npieces < 0) {
    if (release) rbuf_release(mod, owner);
    return;
  }
  piece_t* pc = &mod->pieces[mod->npieces++];
  pc->p = p;
  pc->len = len;
  pc->owner = owner;
  pc->release = release;
  pc->copy = copy;
}

static void send_pieces(imod_t* mod, iside_t* dst) {
  int n = mod->npieces;
  mod->npieces = 0;
  if (n < 0) {
    side_destroy(dst, ENOMEM, IO_WRITE);
    return;
  }
  side_send(dst, mod->pieces, n);
}

// ---- the tracker's events (frame-tracker.c), as inspect-flow.ts's Flow takes them ------

static int bucket_take(flow_t* f) {
  double t = f->tokens;
  double now = (double)uv_now(f->pair->mod->loop);
  if (f->last != now) {
    t += (now - f->last) * f->per_ms;
    if (t > f->burst) t = f->burst;
    f->last = now;
  }
  if (t < 1) {
    f->tokens = t;
    return 0;
  }
  f->tokens = t - 1;
  return 1;
}

static void utf8_failed(flow_t* f, int64_t frame_start) {
  f->utf8_bad = 1;
  // The cut goes before the frame holding the bad byte, when it began in this chunk (or its held bytes).
  f->utf8_cut = frame_start;
  if (frame_start < -(int64_t)f->held_len) {
    // Its head went out with an earlier chunk: the rest is owed before a Close can go.
    int64_t rest = f->t.frame_len - f->text_phase;
    if (rest <= MAX_PAD) {
      f->pad_len = rest;
      f->pad_byte = 0xff ^ f->t.data_mask[f->text_phase & 3];
    }
  }
}

static void on_control(void* ctx, int opcode, const uint8_t* payload, int n, int64_t frame_start, int64_t frame_end) {
  flow_t* f = ctx;
  if (opcode == OP_CLOSE) {
    f->close_start = frame_start;
    f->close_end = frame_end;
    f->close_code = n >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
  } else if (opcode == OP_PONG && f->from_client && frame_start >= -(int64_t)f->held_len && n == 10 &&
             memcmp(payload, "wsgate", 6) == 0) {
    // A pong answering the gateway's own ping (src/relay/keepalive.ts: the
    // "wsgate" tag and a 4-byte sequence number): left out.
    if (f->ndrops + 2 > f->cap_drops) {
      int cap = f->cap_drops == 0 ? 8 : f->cap_drops * 2;
      int64_t* nd = realloc(f->drops, (size_t)cap * sizeof *nd);
      if (nd == NULL) return;  // forwarded after all: an unsolicited pong is legal
      f->drops = nd;
      f->cap_drops = cap;
    }
    f->drops[f->ndrops++] = frame_start;
    f->drops[f->ndrops++] = frame_end;
    f->drop_bytes += frame_end - frame_start;
  }
}

static void on_payload(void* ctx, const uint8_t* chunk, int64_t start, int64_t end, int64_t phase, int64_t frame_start) {
  flow_t* f = ctx;
  tracker_t* t = &f->t;
  if (t->msg_opcode != OP_TEXT || t->msg_rsv1 || f->utf8_bad) return;
  f->text_frame_start = frame_start;
  f->text_phase = phase;
  if (!utf8_write(&f->u8, chunk + start, (size_t)(end - start), t->data_mask, phase)) utf8_failed(f, frame_start);
}

static void on_message_start(void* ctx, int64_t frame_start) {
  flow_t* f = ctx;
  // Charged as the message begins, so the one over the rate is cut before its first byte.
  if (f->rate_cut == NONE && !f->out_closed && !bucket_take(f)) f->rate_cut = frame_start;
}

static int size_bucket(int64_t bytes) {
  if (bytes <= 64) return 0;
  if (bytes > 1048576) return 8;
  return (27 - __builtin_clz((uint32_t)(bytes - 1))) >> 1;
}

static void on_message(void* ctx, int opcode, int64_t bytes) {
  flow_t* f = ctx;
  f->messages++;
  if (f->sizes != NULL) {
    f->sizes[size_bucket(bytes)] += 1;
    f->sizes[9] += (double)bytes;
  }
  if (f->utf8_on && opcode == OP_TEXT && !f->t.msg_rsv1) {
    if (!utf8_end(&f->u8) && !f->utf8_bad) utf8_failed(f, f->text_frame_start);
  }
}

// ---- one chunk (inspect-flow.ts's Flow.chunk) ------------------------------------------

static void drop_queue(flow_t* f) {
  imod_t* mod = f->pair->mod;
  rbuf_t* b = f->q_head;
  while (b != NULL) {
    rbuf_t* next = b->next;
    rbuf_release(mod, b);
    b = next;
  }
  f->q_head = f->q_tail = NULL;
}

/** Nothing more goes toward dst; src is read again (what it sends now is dropped, its Close answer among it). */
static void close_out(flow_t* f) {
  f->out_closed = 1;
  repoll(f->src);
}

/** The frames waiting for a boundary go out here (as pieces); a Close among them closes the flow. */
static void flush_queue(flow_t* f) {
  imod_t* mod = f->pair->mod;
  rbuf_t* b = f->q_head;
  f->q_head = f->q_tail = NULL;
  while (b != NULL) {
    rbuf_t* next = b->next;
    b->next = NULL;
    add_piece(mod, b->data, b->size, b, 1, 0);
    b = next;
  }
  if (f->close_queued) {
    f->close_queued = 0;
    close_out(f);
    push_event(f->pair, EV_CLOSE_WRITTEN, side_index(f->dst));
  }
}

/** data[from, to) as a piece (offsets may reach into the held bytes in front of data). */
static void put(imod_t* mod, rbuf_t* b, const uint8_t* data, int64_t from, int64_t to) {
  if (from >= to) return;
  add_piece(mod, data + from, (size_t)(to - from), b, 0, 0);
}

/** The held bytes and chunk[0, end) minus dropped pongs, with the queued frames at boundary `at` (NONE: none). */
static void forward(flow_t* f, rbuf_t* b, const uint8_t* data, int64_t end, int64_t at) {
  imod_t* mod = f->pair->mod;
  mod->npieces = 0;
  int64_t pos = -(int64_t)f->held_len;
  int64_t ins = at;
  for (int i = 0; i < f->ndrops; i += 2) {
    int64_t s = f->drops[i];
    if (s >= end) break;
    // A boundary is never inside a dropped frame: it is before it or past it.
    if (ins != NONE && ins <= s) {
      put(mod, b, data, pos, ins);
      pos = ins;
      ins = NONE;
      flush_queue(f);
      if (f->out_closed) break;
    }
    put(mod, b, data, pos, s);
    pos = f->drops[i + 1];
  }
  if (ins != NONE && ins >= pos && !f->out_closed) {
    put(mod, b, data, pos, ins);
    pos = ins;
    flush_queue(f);
  }
  if (!f->out_closed) put(mod, b, data, pos, end);
  send_pieces(mod, f->dst);
}

/**
 * Finishes the text frame left open toward dst (its head went out with an
 * earlier chunk) with pad_len bytes: the first unmasks to 0xFF, which no
 * UTF-8 text holds, so the endpoint fails the message rather than take it.
 */
static void pad(flow_t* f) {
  imod_t* mod = f->pair->mod;
  mod->npieces = 0;
  add_piece(mod, &f->pad_byte, 1, NULL, 0, 1);
  for (int64_t left = f->pad_len - 1; left > 0; left -= ZEROS_LEN) add_piece(mod, ZEROS, (size_t)(left >= ZEROS_LEN ? ZEROS_LEN : left), NULL, 0, 0);
  f->pad_len = 0;
  send_pieces(mod, f->dst);
}

static void reset_chunk(flow_t* f) {
  f->close_end = -1;
  f->rate_cut = NONE;
  f->drop_bytes = 0;
  f->ndrops = 0;
}

/**
 * One chunk read from f->src, at `data` in `b`, with the bytes held back
 * from earlier chunks copied just in front of it.
 */
static void process(flow_t* f, rbuf_t* b, const uint8_t* data, int64_t len) {
  ipair_t* p = f->pair;
  tracker_t* t = &f->t;
  int64_t first = f->q_head != NULL ? tracker_bytes_to_boundary(t) : -1;
  int code = tracker_scan(t, data, len);
  f->bytes += (double)len;
  f->heard = 1;
  if (f->drop_bytes < len) p->active = 1;
  if (f->failed) {
    reset_chunk(f);
    return;
  }
  int64_t held = f->held_len;
  int64_t close_end = f->close_end;
  // The first rule broken in the chunk decides where it is cut. With no
  // boundary in the chunk, the rule was broken in the held frame (the
  // tracker fails only in headers and control frames), dropped whole.
  int violation = code;
  int rule = RULE_TRACKER;
  int64_t end = len;
  if (code != 0) {
    int64_t lb = t->last_boundary;
    end = lb >= 0 ? lb : held > 0 ? -held : STUCK;
  }
  if (f->rate_cut != NONE && (violation == 0 || f->rate_cut < end)) {
    violation = 1008;
    end = f->rate_cut;
    rule = RULE_RATE;
  }
  if (f->utf8_bad) {
    int64_t cut = f->utf8_cut >= -held ? f->utf8_cut : STUCK;
    if (violation == 0 || cut < end) {
      violation = 1007;
      end = cut;
      rule = RULE_UTF8;
    }
  }
  // No rule broken: up to src's Close, or up to an unfinished frame kept back.
  if (violation == 0) end = close_end >= 0 ? close_end : len - tracker_open_bytes(t);

  if (!f->out_closed) {
    if (end == STUCK) {
      if (violation == 1007 && f->pad_len > 0) pad(f);
      else f->stuck = 1;
    } else {
      // Injected frames go at the first boundary: before the held bytes,
      // or the first one in the chunk; when that was not known (a header
      // split across chunks), at the last one, or just before src's Close.
      int64_t at = NONE;
      if (f->q_head != NULL && violation == 0) {
        if (held > 0) at = -held;
        else if (first >= 0) at = first <= len ? first : NONE;
        else if (close_end >= 0) at = f->close_start;
        else if (t->last_boundary >= 0) at = t->last_boundary;
        // Nothing goes after src's Close.
        if (close_end >= 0 && at >= close_end) at = NONE;
      }
      forward(f, b, data, end, at);
    }
  }
  // What is left past `end` when no rule was broken: an unfinished frame, kept for the next chunk.
  if (violation == 0 && close_end < 0 && !f->out_closed && end < len && len - end <= MAX_HELD) {
    if (f->held == NULL && (f->held = malloc(MAX_HELD)) == NULL)
      napi_fatal_error("wsgate inspect", NAPI_AUTO_LENGTH, "out of memory", NAPI_AUTO_LENGTH);
    memcpy(f->held, data + end, (size_t)(len - end));
    f->held_len = (int)(len - end);
  } else {
    f->held_len = 0;
  }
  int close_code = f->close_code;
  reset_chunk(f);

  if (violation != 0) {
    f->failed = 1;
    drop_queue(f);
    f->close_queued = 0;
    ievent_t* e = push_event(p, EV_VIOLATION, side_index(f->src));
    e->code = violation;
    e->a = rule;
    e->ecode = t->err;
    if (rule == RULE_TRACKER) snprintf(e->text, sizeof e->text, "%s", t->err_text != NULL ? t->err_text : t->err != NULL ? t->err : "protocol error");
    return;
  }
  if (close_end >= 0) {
    // src's Close went through, unless one of ours went just before it.
    drop_queue(f);
    f->close_queued = 0;
    if (!f->out_closed) {
      close_out(f);
      push_event(p, EV_CLOSE_WRITTEN, side_index(f->dst));
    }
    push_event(p, EV_CLOSE_RECEIVED, side_index(f->src))->code = close_code;
  }
}

/** `len` bytes read into b at HEADROOM: the held bytes go in front, then the chunk is processed. */
static void process_read(flow_t* f, rbuf_t* b, int64_t len) {
  uint8_t* data = b->data + HEADROOM;
  if (f->held_len > 0) memcpy(data - f->held_len, f->held, (size_t)f->held_len);
  process(f, b, data, len);
}

// ---- the loop --------------------------------------------------------------------------

static void pump(iside_t* s) {
  ipair_t* p = s->pair;
  imod_t* mod = p->mod;
  flow_t* f = flow_from(s);
  for (int round = 0; round < READS_PER_WAKE; round++) {
    if (!can_read(s)) return;
    rbuf_t* b = rbuf_new(mod, READ_BUF);
    if (b == NULL) {
      side_destroy(s, ENOMEM, IO_READ);
      return;
    }
    ssize_t n = read(s->fd, b->data + HEADROOM, p->read_size);
    if (n <= 0) {
      int err = n < 0 ? errno : 0;
      rbuf_release(mod, b);
      if (n < 0) {
        if (err == EINTR) continue;
        if (err != EAGAIN && err != EWOULDBLOCK) side_destroy(s, err, IO_READ);
        return;
      }
      s->eof = 1;
      repoll(s);
      push_event(p, EV_EOF, side_index(s));
      return;
    }
    process_read(f, b, n);
    rbuf_release(mod, b);
    if ((size_t)n < p->read_size) return;
  }
}

static void on_ready(watch_t* w, int status, int events) {
  iside_t* s = w->data;
  if (s->closing) return;
  if (status < 0) {
    // EPOLLERR: the socket holds an error (a reset, say).
    side_destroy(s, watch_error(w, status), s->head != NULL ? IO_WRITE : IO_READ);
    return;
  }
  if (events & UV_WRITABLE) {
    flush(s);
    if (s->closing) return;
  }
  if ((events & UV_READABLE) && (s->watch.events & UV_READABLE)) pump(s);
}

static void free_pair(ipair_t* p) {
  napi_env env = p->env;
  imod_t* mod = p->mod;
  napi_delete_reference(env, p->owner);
  for (int i = 0; i < 2; i++) {
    if (p->sizes_ref[i] != NULL) napi_delete_reference(env, p->sizes_ref[i]);
    drop_queue(&p->flow[i]);
    free(p->flow[i].drops);
    free(p->flow[i].held);
    tracker_release(&p->flow[i].t);
    seg_free_all(mod, &p->side[i]);
  }
  free(p->ev);
  mod->open--;
  free(p);
}

static void on_side_closed(watch_t* w) {
  iside_t* s = w->data;
  ipair_t* p = s->pair;
  int last = ++p->closed_sides == 2;
  ievent_t* e = push_event(p, EV_CLOSED, side_index(s));
  e->code = s->err;
  e->a = s->err_op;
  e->b = last;
  // Freed once JavaScript has heard it (flush_events()).
  if (last) p->free_later = 1;
}

// ---- JavaScript API ------------------------------------------------------------------

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != napi_ok) {                                             \
      napi_throw_error(env, NULL, "wsgate inspect: " #call " failed");   \
      return NULL;                                                       \
    }                                                                    \
  } while (0)

static ipair_t* pair_arg(napi_env env, napi_value v) {
  void* data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "wsgate inspect: not a session");
    return NULL;
  }
  return data;
}

/** The session and a side (0 client, 1 upstream) from argv[0], argv[1]. */
static ipair_t* session_side(napi_env env, napi_callback_info info, size_t want, napi_value* argv, int* side) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "wsgate inspect: missing arguments");
    return NULL;
  }
  ipair_t* p = pair_arg(env, argv[0]);
  if (p == NULL) return NULL;
  if (side != NULL) {
    int32_t v = 0;
    if (napi_get_value_int32(env, argv[1], &v) != napi_ok || (v != 0 && v != 1)) {
      napi_throw_type_error(env, NULL, "wsgate inspect: side is 0 or 1");
      return NULL;
    }
    *side = v;
  }
  return p;
}

/** The data of a typed array of `type` and at least `min` elements; else NULL. */
static void* typed_data(napi_env env, napi_value v, napi_typedarray_type type, size_t min) {
  bool is = false;
  napi_typedarray_type kind;
  size_t length = 0;
  void* data = NULL;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &kind, &length, &data, NULL, NULL) != napi_ok ||
      kind != type || length < min)
    return NULL;
  return data;
}

// setEvents(fn, batchFn, events): where every session's events go. One at a
// time (texts, a FIN among other news, calls out of JavaScript): fn(owner,
// kind, side, code, a, b, text, errorCode). The rest of a pass over the watch
// set (flush_events()): batchFn(n), the numbers in `events`, an Int32Array of
// BATCH_EVENTS * BATCH_INTS.
static napi_value set_events(napi_env env, napi_callback_info info) {
  imod_t* mod;
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  napi_valuetype type, batch_type;
  int32_t* batch = argc < 3 ? NULL : typed_data(env, argv[2], napi_int32_array, (size_t)BATCH_EVENTS * BATCH_INTS);
  if (batch == NULL || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function || napi_typeof(env, argv[1], &batch_type) != napi_ok ||
      batch_type != napi_function) {
    napi_throw_type_error(env, NULL, "wsgate inspect: setEvents(fn, batchFn, Int32Array)");
    return NULL;
  }
  napi_ref refs[3];
  for (int i = 0; i < 3; i++) CHECK(napi_create_reference(env, argv[i], 1, &refs[i]));
  if (mod->event != NULL) {
    napi_delete_reference(env, mod->event);
    napi_delete_reference(env, mod->batch_fn);
    napi_delete_reference(env, mod->batch_ref);
  }
  mod->event = refs[0];
  mod->batch_fn = refs[1];
  mod->batch_ref = refs[2];
  mod->batch = batch;
  return NULL;
}

/** A Float64Array of the tally's shape (10 slots), referenced; else NULL. */
static double* sizes_arg(napi_env env, napi_value v, napi_ref* ref) {
  *ref = NULL;
  double* data = typed_data(env, v, napi_float64_array, 10);
  if (data == NULL || napi_create_reference(env, v, 1, ref) != napi_ok) return NULL;
  return data;
}

static void flow_init(ipair_t* p, flow_t* f, int from_client, int rsv1_allowed, double max_message, double rate, int utf8, double* sizes) {
  f->pair = p;
  f->from_client = from_client;
  f->src = &p->side[from_client ? 0 : 1];
  f->dst = &p->side[from_client ? 1 : 0];
  f->utf8_on = utf8;
  f->ev.control = on_control;
  f->ev.message = on_message;
  // The sink and the gate only when needed: without them the tracker costs a null check per frame.
  f->ev.payload = utf8 ? on_payload : NULL;
  f->ev.message_start = rate > 0 ? on_message_start : NULL;
  tracker_init(&f->t, from_client, rsv1_allowed, (int64_t)max_message, &f->ev, f);
  f->sizes = sizes;
  f->close_end = -1;
  f->rate_cut = NONE;
  if (rate > 0) {
    f->per_ms = rate / 1000;
    // A rate below 1/s still lets one message through.
    f->burst = rate > 1 ? rate : 1;
    f->tokens = f->burst;
    f->last = (double)uv_now(p->mod->loop);
  }
}

// open(owner, clientFd, upstreamFd, readSize, maxMessageBytes, messageRate,
//      upstreamMessageRate, flags, upstreamSizes, downstreamSizes, slot):
// relays between duplicates of the two descriptors (the caller closes its
// own). flags: 1 validateUtf8, 2 rsv1Allowed, 4 the client is a bare
// connection (hangUp closes it at once). The sizes are the tally's
// Float64Arrays, or null. slot: where the owner is in the batch's table.
static napi_value open_session(napi_env env, napi_callback_info info) {
  imod_t* mod;
  size_t argc = 11;
  napi_value argv[11], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void**)&mod));
  if (mod->event == NULL) {
    napi_throw_error(env, NULL, "wsgate inspect: setEvents() first");
    return NULL;
  }
  if (argc < 11) {
    napi_throw_type_error(env, NULL, "wsgate inspect: open() takes 11 arguments");
    return NULL;
  }
  napi_valuetype type;
  CHECK(napi_typeof(env, argv[0], &type));
  if (type != napi_object) {
    napi_throw_type_error(env, NULL, "wsgate inspect: the owner is an object");
    return NULL;
  }
  int32_t fds[2] = {-1, -1}, read_size, flags, slot;
  double max_message, rate, up_rate;
  // The client: a descriptor to duplicate, or a connection the module accepted (conn.c), taken as it is.
  conn_t* accepted = conn_of(mod->home, env, argv[1]);
  if (accepted == NULL) CHECK(napi_get_value_int32(env, argv[1], &fds[0]));
  // The upstream: a descriptor to duplicate, or a dial (dial.c) whose connection the session takes as it is.
  dial_t* dialed = dial_of(mod->home, env, argv[2]);
  if (dialed == NULL) CHECK(napi_get_value_int32(env, argv[2], &fds[1]));
  CHECK(napi_get_value_int32(env, argv[3], &read_size));
  CHECK(napi_get_value_double(env, argv[4], &max_message));
  CHECK(napi_get_value_double(env, argv[5], &rate));
  CHECK(napi_get_value_double(env, argv[6], &up_rate));
  CHECK(napi_get_value_int32(env, argv[7], &flags));
  CHECK(napi_get_value_int32(env, argv[10], &slot));
  if (read_size <= 0 || read_size > READ_MAX) read_size = READ_MAX;
  if (!(max_message >= 0 && max_message <= 9007199254740991.0)) max_message = 0;
  if (!(rate >= 0)) rate = 0;
  if (!(up_rate >= 0)) up_rate = 0;
  // Every argument is checked before anything is taken: a throw below this
  // point must give back what it took.
  napi_ref owner;
  CHECK(napi_create_reference(env, argv[0], 1, &owner));
  ipair_t* p = calloc(1, sizeof *p);
  if (p == NULL) {
    napi_delete_reference(env, owner);
    napi_throw_error(env, "ENOMEM", "wsgate inspect: out of memory");
    return NULL;
  }
  watch_t* w[2] = {&p->side[0].watch, &p->side[1].watch};
  int err = dial_session(mod->home, fds, accepted, dialed, w, on_ready);
  if (err != 0) {
    napi_delete_reference(env, owner);
    free(p);
    char msg[96];
    snprintf(msg, sizeof msg, "wsgate inspect: cannot take the session's sockets: %s", strerror(err));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  p->owner = owner;
  p->slot = slot;
  p->mod = mod;
  p->env = env;
  p->read_size = (size_t)read_size;
  p->client_bare = (flags & 4) != 0;
  p->active = 1;
  for (int i = 0; i < 2; i++) {
    p->side[i].pair = p;
    p->side[i].fd = w[i]->fd;
    p->side[i].watch.data = &p->side[i];
  }
  // As HTTP servers' sockets do, the client side allows half-open connections; the upstream side does not.
  p->side[0].half_open = 1;
  double* up_sizes = sizes_arg(env, argv[8], &p->sizes_ref[0]);
  double* down_sizes = sizes_arg(env, argv[9], &p->sizes_ref[1]);
  // The limits protect backends from clients; what upstreams send is trusted
  // (no size limit, no UTF-8 check) unless upstreamMessageRate is set.
  int rsv1 = (flags & 2) != 0;
  flow_init(p, &p->flow[0], 1, rsv1, max_message, rate, (flags & 1) != 0, up_sizes);
  flow_init(p, &p->flow[1], 0, rsv1, 0, up_rate, 0, down_sizes);
  mod->open++;
  repoll(&p->side[0]);
  repoll(&p->side[1]);
  CHECK(napi_create_external(env, p, NULL, NULL, &result));
  return result;
}

// feed(session, side, buffer): bytes read from `side` before the session
// was handed over (during the handshake), taken as if read now.
static napi_value feed(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int side;
  ipair_t* p = session_side(env, info, 3, argv, &side);
  if (p == NULL) return NULL;
  uint8_t* data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[2], (void**)&data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "wsgate inspect: feed() takes a Buffer");
    return NULL;
  }
  iside_t* s = &p->side[side];
  flow_t* f = flow_from(s);
  for (size_t off = 0; off < len && !s->closing;) {
    size_t n = len - off > READ_MAX ? READ_MAX : len - off;
    rbuf_t* b = rbuf_new(p->mod, READ_BUF);
    if (b == NULL) {
      side_destroy(s, ENOMEM, IO_READ);
      break;
    }
    memcpy(b->data + HEADROOM, data + off, n);
    off += n;
    process_read(f, b, (int64_t)n);
    rbuf_release(p->mod, b);
    deliver(p, 1);
  }
  return NULL;
}

// inject(session, side, buffer, isClose): a frame of the gateway's own
// toward `side`, now if that stream is between frames, else at its next
// boundary. 1: done (or nothing more is taken), 2: a Close went out now,
// 0: impossible, the stream is stuck inside a frame.
static napi_value inject(napi_env env, napi_callback_info info) {
  napi_value argv[4], result;
  int side;
  ipair_t* p = session_side(env, info, 4, argv, &side);
  if (p == NULL) return NULL;
  uint8_t* data = NULL;
  size_t len = 0;
  bool is_close = false;
  if (napi_get_buffer_info(env, argv[2], (void**)&data, &len) != napi_ok || napi_get_value_bool(env, argv[3], &is_close) != napi_ok) {
    napi_throw_type_error(env, NULL, "wsgate inspect: inject(session, side, buffer, isClose)");
    return NULL;
  }
  flow_t* f = flow_to(p, side);
  int r = 1;
  if (f->out_closed || f->close_queued) r = 1;
  else if (f->stuck) r = 0;
  else if (f->q_head == NULL && (f->failed || f->held_len > 0 || tracker_at_frame_boundary(&f->t))) {
    // Held bytes are a frame not forwarded yet: dst is between frames.
    imod_t* mod = p->mod;
    mod->npieces = 0;
    add_piece(mod, data, len, NULL, 0, 1);
    send_pieces(mod, f->dst);
    if (is_close) {
      close_out(f);
      r = 2;
    }
  } else {
    rbuf_t* b = rbuf_copy(p->mod, data, len);
    if (b == NULL) {
      napi_throw_error(env, "ENOMEM", "wsgate inspect: out of memory");
      return NULL;
    }
    b->size = (uint32_t)len;
    if (f->q_tail != NULL) f->q_tail->next = b;
    else f->q_head = b;
    f->q_tail = b;
    if (is_close) f->close_queued = 1;
  }
  CHECK(napi_create_int32(env, r, &result));
  return result;
}

// canClose(session, side): a Close can still be sent toward `side` (none is out or queued).
static napi_value can_close(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  int side;
  ipair_t* p = session_side(env, info, 2, argv, &side);
  if (p == NULL) return NULL;
  flow_t* f = flow_to(p, side);
  CHECK(napi_get_boolean(env, !f->out_closed && !f->close_queued, &result));
  return result;
}

// shut(session, side): nothing more is written toward `side`.
static napi_value shut(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int side;
  ipair_t* p = session_side(env, info, 2, argv, &side);
  if (p == NULL) return NULL;
  flow_t* f = flow_to(p, side);
  close_out(f);
  drop_queue(f);
  f->close_queued = 0;
  return NULL;
}

// end(session, side, hangUp): FIN once everything queued toward `side` is
// out; with hangUp (a bare client that said Close), closed at once when
// nothing is queued.
static napi_value end_side(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int side;
  ipair_t* p = session_side(env, info, 3, argv, &side);
  if (p == NULL) return NULL;
  bool hang_up = false;
  CHECK(napi_get_value_bool(env, argv[2], &hang_up));
  iside_t* s = &p->side[side];
  if (hang_up && p->client_bare) side_hangup(s);
  else side_end(s);
  return NULL;
}

// destroy(session, side): the connection is closed now.
static napi_value destroy_side(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int side;
  ipair_t* p = session_side(env, info, 2, argv, &side);
  if (p == NULL) return NULL;
  side_destroy(&p->side[side], 0, 0);
  return NULL;
}

// probe(session): for the keepalive, bit 1: the client sent something since
// the last probe, or is not being read (backpressure), and that is cleared;
// bit 2: a frame of the gateway's own waits for a boundary toward the client.
static napi_value probe(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  ipair_t* p = session_side(env, info, 1, argv, NULL);
  if (p == NULL) return NULL;
  flow_t* c2u = &p->flow[0];
  int paused = !c2u->out_closed && c2u->dst->head != NULL;
  int bits = 0;
  if (c2u->heard || paused) {
    c2u->heard = 0;
    bits |= 1;
  }
  if (p->flow[1].q_head != NULL) bits |= 2;
  CHECK(napi_create_int32(env, bits, &result));
  return result;
}

// active(session, clear): whether data moved since the flag was last cleared
// (pongs to the gateway's pings do not count).
static napi_value active(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  ipair_t* p = session_side(env, info, 2, argv, NULL);
  if (p == NULL) return NULL;
  bool clear = false;
  CHECK(napi_get_value_bool(env, argv[1], &clear));
  CHECK(napi_get_boolean(env, p->active, &result));
  if (clear) p->active = 0;
  return result;
}

// stat(session, which): 0 bytes from the client, 1 bytes from the upstream,
// 2 messages from the client, 3 messages from the upstream; 4 and 5 the
// bytes queued toward the client and toward the upstream (for tests).
static napi_value session_stat(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  ipair_t* p = session_side(env, info, 2, argv, NULL);
  if (p == NULL) return NULL;
  int32_t which = 0;
  CHECK(napi_get_value_int32(env, argv[1], &which));
  double v = 0;
  switch (which) {
    case 0: v = p->flow[0].bytes; break;
    case 1: v = p->flow[1].bytes; break;
    case 2: v = p->flow[0].messages; break;
    case 3: v = p->flow[1].messages; break;
    case 4:
    case 5:
      for (seg_t* g = p->side[which - 4].head; g != NULL; g = g->next) v += (double)g->len;
      break;
    default: break;
  }
  CHECK(napi_create_double(env, v, &result));
  return result;
}

// stats(session, out): stat() 0 to 3 and whether it was active, in a
// Float64Array of 5: a session's last figures in one call.
static napi_value session_stats(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  ipair_t* p = session_side(env, info, 2, argv, NULL);
  if (p == NULL) return NULL;
  double* out = typed_data(env, argv[1], napi_float64_array, 5);
  if (out == NULL) {
    napi_throw_type_error(env, NULL, "wsgate inspect: stats(session, Float64Array(5))");
    return NULL;
  }
  out[0] = p->flow[0].bytes;
  out[1] = p->flow[1].bytes;
  out[2] = p->flow[0].messages;
  out[3] = p->flow[1].messages;
  out[4] = p->active;
  return NULL;
}

// openSessions(): sessions not yet freed (for tests).
static napi_value open_sessions(napi_env env, napi_callback_info info) {
  imod_t* mod;
  napi_value result;
  CHECK(napi_get_cb_info(env, info, NULL, NULL, NULL, (void**)&mod));
  CHECK(napi_create_double(env, (double)mod->open, &result));
  return result;
}

static void free_module(void* arg) {
  imod_t* mod = arg;
  free(mod->spare);
  free(mod->pieces);
  free(mod);
}

napi_value wsgate_inspect_init(napi_env env, napi_value exports, watch_home_t* home) {
  imod_t* mod = calloc(1, sizeof *mod);
  if (mod == NULL) return exports;
  mod->home = home;
  if (napi_get_uv_event_loop(env, &mod->loop) != napi_ok) {
    free(mod);
    return exports;
  }
  napi_value name, obj;
  napi_create_string_utf8(env, "wsgate.inspect", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &mod->async);
  // Freed with the environment; the async context and the reference die with it.
  napi_add_env_cleanup_hook(env, free_module, mod);
  napi_property_descriptor props[] = {
    {"setEvents", NULL, set_events, NULL, NULL, NULL, napi_enumerable, mod},
    {"open", NULL, open_session, NULL, NULL, NULL, napi_enumerable, mod},
    {"feed", NULL, feed, NULL, NULL, NULL, napi_enumerable, mod},
    {"inject", NULL, inject, NULL, NULL, NULL, napi_enumerable, mod},
    {"canClose", NULL, can_close, NULL, NULL, NULL, napi_enumerable, mod},
    {"shut", NULL, shut, NULL, NULL, NULL, napi_enumerable, mod},
    {"end", NULL, end_side, NULL, NULL, NULL, napi_enumerable, mod},
    {"destroy", NULL, destroy_side, NULL, NULL, NULL, napi_enumerable, mod},
    {"probe", NULL, probe, NULL, NULL, NULL, napi_enumerable, mod},
    {"active", NULL, active, NULL, NULL, NULL, napi_enumerable, mod},
    {"stat", NULL, session_stat, NULL, NULL, NULL, napi_enumerable, mod},
    {"stats", NULL, session_stats, NULL, NULL, NULL, napi_enumerable, mod},
    {"openSessions", NULL, open_sessions, NULL, NULL, NULL, napi_enumerable, mod},
  };
  napi_create_object(env, &obj);
  napi_define_properties(env, obj, sizeof props / sizeof props[0], props);
  napi_set_named_property(env, exports, "inspect", obj);
  return exports;
}
