// loadgen: a single-threaded WebSocket load generator for the benchmark suite (bench/README.md,
// "The C load generator"). The Node load tool spends 74-110 µs of CPU per echo, so on a 2-core
// machine it cannot drive a proxy's core to 100%; this one does the same work in a few µs: epoll,
// non-blocking sockets, pre-built masked frames, one write for every frame due on a connection.
//
//   loadgen ws://127.0.0.1:PORT/PATH --mode closed --connections N --inflight K --size B --duration S --warmup S
//   loadgen ws://127.0.0.1:PORT/PATH --mode churn  --connections N --size B --duration S --warmup S
//   loadgen --selftest
//
// Loopback only (127.0.0.0/8): it is a tool for measuring proxies on this machine, not a load
// tester for other people's servers. One JSON object on stdout at the end; "loadgen: measure start"
// and "loadgen: measure end" on stderr when the measured phase begins and ends, so that a parent can
// read the proxy's CPU over the same window. Exit status: 0 clean, 1 errors counted, 2 bad usage.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_CONNECTIONS 20000
#define MAX_INFLIGHT 1024
#define MAX_SIZE (1u << 20)
#define MAX_SECONDS 600.0
#define MAX_SOURCES 64
/* Handshakes in flight at once while a closed-loop run opens its connections. */
#define OPEN_CONCURRENCY 256
/* The longest response head accepted. */
#define HEAD_MAX 4096
/* How often deadlines and delayed restarts are checked. */
#define SCAN_NS 20000000ull
/* A churn slot whose cycle failed waits this long before the next: a refusing target is not hammered. */
#define RETRY_NS 50000000ull
#define NS 1000000000ull

/* The key is fixed (a load tool has no cache to poison): its accept value is RFC 6455's example. */
static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/* ---------- HDR histogram: log-linear buckets, 3 significant digits, values in µs ---------- */

#define HDR_HALF_MAG 10
#define HDR_HALF (1 << HDR_HALF_MAG)  /* 1024 */
#define HDR_SUB (2 * HDR_HALF)        /* 2048 sub-buckets: 1 part in 2048 ≥ 3 significant digits */
#define HDR_BUCKETS 22                /* up to 2048 << 21 µs, about 71 minutes */
#define HDR_LEN ((HDR_BUCKETS + 1) * HDR_HALF)
#define HDR_HIGHEST (((int64_t)HDR_SUB << (HDR_BUCKETS - 1)) - 1)

typedef struct {
  uint64_t counts[HDR_LEN];
  uint64_t total;
  int64_t max;
  double sum;
} hdr_t;

static inline int hdr_bucket(int64_t v) { return 64 - __builtin_clzll((uint64_t)v | (HDR_SUB - 1)) - (HDR_HALF_MAG + 1); }

static inline void hdr_record(hdr_t *h, int64_t v) {
  if (v < 0) v = 0;
  if (v > HDR_HIGHEST) v = HDR_HIGHEST;
  int b = hdr_bucket(v);
  int sub = (int)(v >> b);
  h->counts[((b + 1) << HDR_HALF_MAG) + (sub - HDR_HALF)]++;
  h->total++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static int64_t hdr_value_at(int i) {
  int b = (i >> HDR_HALF_MAG) - 1;
  int64_t sub = (i & (HDR_HALF - 1)) + HDR_HALF;
  if (b < 0) {
    sub -= HDR_HALF;
    b = 0;
  }
  return sub << b;
}

/* The highest value that lands in the same bucket as v, as HdrHistogram reports percentiles. */
static int64_t hdr_highest_equivalent(int64_t v) {
  int b = hdr_bucket(v);
  return ((v >> b) << b) + ((int64_t)1 << b) - 1;
}

static int64_t hdr_percentile(const hdr_t *h, double p) {
  if (h->total == 0) return -1;
  uint64_t want = (uint64_t)(p / 100.0 * (double)h->total + 0.5);
  if (want < 1) want = 1;
  uint64_t seen = 0;
  for (int i = 0; i < HDR_LEN; i++) {
    seen += h->counts[i];
    if (seen >= want) {
      int64_t v = hdr_highest_equivalent(hdr_value_at(i));
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

static void hdr_json(FILE *out, const hdr_t *h) {
  if (h->total == 0) {
    fprintf(out, "{\"count\":0,\"mean\":null,\"p50\":null,\"p90\":null,\"p99\":null,\"p999\":null,\"max\":null}");
    return;
  }
  fprintf(out, "{\"count\":%llu,\"mean\":%.1f,\"p50\":%lld,\"p90\":%lld,\"p99\":%lld,\"p999\":%lld,\"max\":%lld}", (unsigned long long)h->total,
          h->sum / (double)h->total, (long long)hdr_percentile(h, 50), (long long)hdr_percentile(h, 90), (long long)hdr_percentile(h, 99),
          (long long)hdr_percentile(h, 99.9), (long long)h->max);
}

/* ---------- options ---------- */

enum mode { MODE_CLOSED, MODE_CHURN };

static struct {
  enum mode mode;
  bool mode_set;
  uint32_t connections, inflight, size;
  double duration, warmup, timeout;
  int cpu;
  struct sockaddr_in target;
  char host[64];
  char path[512];
  struct in_addr sources[MAX_SOURCES];
  int nsources;
} opt = {.connections = 1, .inflight = 1, .size = 64, .duration = 10, .warmup = 0, .timeout = 5, .cpu = -1};

static const char USAGE[] =
    "usage: loadgen ws://127.x.x.x:PORT/PATH --mode closed|churn [options]\n"
    "       loadgen --selftest\n"
    "\n"
    "  --mode closed       N connections, each with K messages outstanding; each echo sends the next\n"
    "  --mode churn        N slots, each looping: connect, upgrade, one echo, close (1000)\n"
    "  --connections N     1..20000 (default 1)\n"
    "  --inflight K        closed: messages outstanding per connection, 1..1024 (default 1)\n"
    "  --size B            payload bytes, 8..1048576, text (default 64; below 8 is padded to 8)\n"
    "  --duration S        measured seconds, up to 600 (default 10)\n"
    "  --warmup S          unmeasured seconds of load before it (default 0)\n"
    "  --timeout S         handshake, echo and close timeout, up to 60 (default 5)\n"
    "  --source 127.A.B.C  first source address (default 127.A.B.2, A.B random for each run)\n"
    "  --sources K         rotate over K source addresses from it, 1..64 (default 1 closed, 8 churn)\n"
    "  --cpu N             pin to CPU N\n"
    "  --selftest          record 1..10000 µs in the histogram and print its percentiles\n";

static void usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\n\n", stderr);
  fputs(USAGE, stderr);
  va_end(ap);
  exit(2);
}

static double seconds_arg(const char *name, const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) usage("%s: expected seconds from %g to %g, got \"%s\"", name, lo, hi, s);
  return v;
}

static uint32_t int_arg(const char *name, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) usage("%s: expected a whole number from %ld to %ld, got \"%s\"", name, lo, hi, s);
  return (uint32_t)v;
}

static bool loopback(struct in_addr a) { return (ntohl(a.s_addr) >> 24) == 127; }

/* ws://HOST[:PORT][/PATH] with HOST a 127.x.x.x literal or localhost; anything else is refused. */
static void parse_url(const char *url) {
  if (strncmp(url, "ws://", 5) != 0) usage("only ws:// URLs to 127.0.0.0/8 are allowed (got \"%s\")", url);
  const char *h = url + 5;
  size_t hl = strcspn(h, ":/");
  char host[32];
  if (hl == 0 || hl >= sizeof host) usage("bad host in \"%s\"", url);
  memcpy(host, h, hl);
  host[hl] = '\0';
  const char *p = h + hl;
  long port = 80;
  if (*p == ':') {
    char *end;
    port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535) usage("bad port in \"%s\"", url);
    p = end;
  }
  if (*p != '\0' && *p != '/') usage("bad URL \"%s\"", url);
  const char *path = *p == '\0' ? "/" : p;
  if (strlen(path) >= sizeof opt.path || strpbrk(path, " \r\n") != NULL) usage("bad path in \"%s\"", url);
  struct in_addr a;
  if (strcmp(host, "localhost") == 0) a.s_addr = htonl(INADDR_LOOPBACK);
  else if (inet_pton(AF_INET, host, &a) != 1 || !loopback(a)) usage("refusing \"%s\": only 127.0.0.0/8 (or localhost) may be loaded", host);
  opt.target.sin_family = AF_INET;
  opt.target.sin_port = htons((uint16_t)port);
  opt.target.sin_addr = a;
  snprintf(opt.host, sizeof opt.host, "%s:%ld", host, port);
  snprintf(opt.path, sizeof opt.path, "%s", path);
}

/* ---------- time, errors, counters ---------- */

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

enum err_kind { E_REFUSED, E_HS_STATUS, E_BAD_ACCEPT, E_TIMEOUT, E_RESET, E_PROTOCOL, E_CLOSED, E_BAD_ECHO, E_EOF, E_CONNECT, E_SOCKET, E_KINDS };
static const char *const ERR_NAMES[E_KINDS] = {"refused", "handshake status", "bad accept", "timeout", "reset", "protocol error",
                                               "closed by server", "bad echo", "eof without close", "connect error", "socket error"};
static uint64_t errors[E_KINDS];

/* Counted over the measured phase only. */
static bool measuring;
static uint64_t messages, sent, handshakes;
static hdr_t latency, hs_latency;
/* System calls, counted always; the report gives the measured phase's share. */
static uint64_t n_reads, n_writes, n_waits;

static volatile sig_atomic_t stop_requested;

/* ---------- connections ---------- */

enum state { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_WAIT_EOF, ST_DONE };
static const char *const STATE_NAMES[] = {"idle", "connecting", "handshake", "open", "closing", "waiting for EOF", "done"};

typedef struct {
  int fd;
  enum state state;
  uint32_t idx, gen;
  uint32_t events; /* registered with epoll */
  bool in_handshake; /* counted in hs_in_flight */
  uint64_t t_connect, deadline, last_progress, restart_at;
  /* unsent bytes: out[off, len) */
  uint8_t *out;
  uint32_t out_off, out_len, out_cap;
  /* a frame (or response head) cut across reads */
  uint8_t *pend;
  uint32_t pend_len, pend_cap;
  /* the message being received (server frames may be fragmented) */
  bool in_frag;
  uint32_t msg_len;
  uint8_t first8[8];
  /* closed loop: a ring of send times, one per outstanding message */
  uint32_t seq_sent, seq_recv, outstanding;
  uint64_t *sent_ns;
} conn_t;

static conn_t *conns;
static int ep = -1;
static uint8_t *rbuf;
static size_t rcap;
static uint8_t *tmpl; /* one pre-built masked data frame */
static uint32_t frame_len, payload_at;
static char request[1024];
static size_t request_len;
static enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_TEARDOWN } phase;
static uint32_t hs_in_flight, next_open, source_rr;
/* Descriptors open, and closed-loop connections not yet done: kept as counts, not found by a scan of every connection. */
static uint32_t open_fds, live;
static uint64_t opened;
static uint64_t timeout_ns;

static bool first_error[E_KINDS];

static void conn_close(conn_t *c, bool failed, uint64_t now);

static void fail(conn_t *c, enum err_kind kind, uint64_t now, const char *fmt, ...) {
  errors[kind]++;
  if (!first_error[kind]) {
    first_error[kind] = true;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: first %s error (connection %u, %s): ", ERR_NAMES[kind], c->idx, STATE_NAMES[c->state]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
  }
  conn_close(c, true, now);
}

static enum err_kind errno_kind(int e) {
  if (e == ECONNREFUSED) return E_REFUSED;
  if (e == ECONNRESET || e == EPIPE) return E_RESET;
  if (e == ETIMEDOUT) return E_TIMEOUT;
  return E_SOCKET;
}

static void set_events(conn_t *c) {
  uint32_t want = EPOLLIN | ((c->state == ST_CONNECTING || c->out_len > c->out_off) ? EPOLLOUT : 0);
  if (want == c->events) return;
  struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)c->idx | ((uint64_t)c->gen << 32)};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = want;
}

/* Room for `need` more unsent bytes. */
static bool out_reserve(conn_t *c, uint32_t need) {
  if (c->out_len + need <= c->out_cap) return true;
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
    if (c->out_len + need <= c->out_cap) return true;
  }
  uint64_t cap = (uint64_t)c->out_cap * 2;
  if (cap < (uint64_t)c->out_len + need) cap = (uint64_t)c->out_len + need;
  if (cap > (64u << 20)) return false;
  uint8_t *p = realloc(c->out, cap);
  if (p == NULL) return false;
  c->out = p;
  c->out_cap = (uint32_t)cap;
  return true;
}

/* Writes what is unsent in one call; a short write means the socket is full: wait for EPOLLOUT. */
static bool flush(conn_t *c, uint64_t now) {
  if (c->out_len > c->out_off) {
    size_t want = c->out_len - c->out_off;
    ssize_t n;
    do n = send(c->fd, c->out + c->out_off, want, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    n_writes++;
    if (n < 0 && errno != EAGAIN) {
      int e = errno;
      fail(c, errno_kind(e), now, "send: %s", strerror(e));
      return false;
    }
    if (n > 0) c->out_off += (uint32_t)n;
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  }
  set_events(c);
  return true;
}

static inline void stamp(uint8_t *p, uint32_t seq) {
  static const char HEX[] = "0123456789abcdef";
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)HEX[seq & 15];
    seq >>= 4;
  }
}

/* Queues n data frames, each stamped with its sequence number; they leave in one write. */
static bool queue_messages(conn_t *c, uint32_t n, uint64_t now) {
  if (!out_reserve(c, n * frame_len)) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t *p = c->out + c->out_len;
    memcpy(p, tmpl, frame_len);
    stamp(p + payload_at, c->seq_sent);
    c->sent_ns[c->seq_sent % opt.inflight] = now;
    c->seq_sent++;
    c->outstanding++;
    c->out_len += frame_len;
  }
  if (measuring) sent += n;
  return true;
}

/* A control frame, masked with an all-zero key. */
static bool queue_control(conn_t *c, uint8_t opcode, const uint8_t *payload, uint32_t len) {
  if (!out_reserve(c, 6 + len)) return false;
  uint8_t *p = c->out + c->out_len;
  p[0] = (uint8_t)(0x80 | opcode);
  p[1] = (uint8_t)(0x80 | len);
  memset(p + 2, 0, 4);
  if (len > 0) memcpy(p + 6, payload, len);
  c->out_len += 6 + len;
  return true;
}

static bool queue_close(conn_t *c) {
  static const uint8_t code1000[2] = {0x03, 0xe8};
  return queue_control(c, 0x8, code1000, 2);
}

static void start_connect(conn_t *c, uint64_t now) {
  c->gen++;
  c->t_connect = now;
  c->deadline = now + timeout_ns;
  c->restart_at = 0;
  c->seq_sent = c->seq_recv = c->outstanding = 0;
  c->in_frag = false;
  c->msg_len = 0;
  c->out_off = c->out_len = 0;
  c->pend_len = 0;
  c->events = 0;
  c->state = ST_CONNECTING;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    int e = errno;
    c->fd = -1;
    fail(c, E_SOCKET, now, "socket: %s", strerror(e));
    return;
  }
  c->fd = fd;
  open_fds++;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* The port is chosen at connect(), knowing the destination, so one source address serves many. */
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = opt.sources[source_rr++ % (uint32_t)opt.nsources]};
  if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
    int e = errno;
    fail(c, E_CONNECT, now, "bind %s: %s", inet_ntoa(src.sin_addr), strerror(e));
    return;
  }
  if (connect(fd, (struct sockaddr *)&opt.target, sizeof opt.target) != 0 && errno != EINPROGRESS) {
    int e = errno;
    fail(c, e == ECONNREFUSED ? E_REFUSED : E_CONNECT, now, "connect: %s", strerror(e));
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)c->idx | ((uint64_t)c->gen << 32)};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    fail(c, E_SOCKET, now, "epoll_ctl: %s", strerror(e));
    return;
  }
  c->events = EPOLLIN | EPOLLOUT;
  c->in_handshake = true;
  hs_in_flight++;
}

static void conn_close(conn_t *c, bool failed, uint64_t now) {
  if (c->fd >= 0) {
    close(c->fd);
    open_fds--;
  }
  c->fd = -1;
  if (c->in_handshake) {
    c->in_handshake = false;
    hs_in_flight--;
  }
  c->out_off = c->out_len = c->pend_len = 0;
  c->outstanding = 0;
  c->deadline = 0;
  if (opt.mode == MODE_CHURN && phase < PH_TEARDOWN) {
    /* The next cycle: straight away after a clean one, a little later after a failure. */
    c->state = ST_IDLE;
    if (failed) c->restart_at = now + RETRY_NS;
    else start_connect(c, now);
    return;
  }
  if (c->state != ST_DONE) live--;
  c->state = ST_DONE;
}

/* Checks the 101: status, then Sec-WebSocket-Accept against the fixed key's. */
static bool check_head(conn_t *c, const uint8_t *h, size_t n, uint64_t now) {
  if (n < 13 || memcmp(h, "HTTP/1.1 ", 9) != 0) {
    fail(c, E_PROTOCOL, now, "not an HTTP/1.1 response: \"%.*s\"", (int)(n < 40 ? n : 40), (const char *)h);
    return false;
  }
  if (memcmp(h + 9, "101", 3) != 0 || (h[12] != ' ' && h[12] != '\r')) {
    const uint8_t *eol = memchr(h, '\r', n);
    fail(c, E_HS_STATUS, now, "%.*s", (int)(eol == NULL ? 12 : eol - h), (const char *)h);
    return false;
  }
  const uint8_t *p = h, *end = h + n;
  while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
    p++;
    if ((size_t)(end - p) > 21 && strncasecmp((const char *)p, "sec-websocket-accept:", 21) == 0) {
      const uint8_t *v = p + 21;
      while (v < end && (*v == ' ' || *v == '\t')) v++;
      if ((size_t)(end - v) >= 30 && memcmp(v, ACCEPT, 28) == 0 && (v[28] == '\r' || v[28] == ' ' || v[28] == '\t')) return true;
      const uint8_t *eol = memchr(v, '\r', (size_t)(end - v));
      fail(c, E_BAD_ACCEPT, now, "Sec-WebSocket-Accept \"%.*s\", expected \"%s\"", (int)(eol == NULL ? 0 : (eol - v > 60 ? 60 : eol - v)), (const char *)v,
           ACCEPT);
      return false;
    }
  }
  fail(c, E_BAD_ACCEPT, now, "no Sec-WebSocket-Accept header");
  return false;
}

static bool sending_allowed(void) { return phase < PH_TEARDOWN; }

static void handshake_done(conn_t *c, uint64_t now) {
  c->state = ST_OPEN;
  c->in_handshake = false;
  hs_in_flight--;
  c->last_progress = now;
  opened++;
  if (measuring) {
    handshakes++;
    hdr_record(&hs_latency, (int64_t)((now - c->t_connect) / 1000));
  }
  if (opt.mode == MODE_CLOSED) {
    c->deadline = 0;
    if (sending_allowed()) queue_messages(c, opt.inflight, now);
  } else {
    c->deadline = now + timeout_ns;
    queue_messages(c, 1, now);
  }
}

/* One data frame of a message; at the last one the message is checked and timed. */
static bool on_data(conn_t *c, unsigned op, bool fin, const uint8_t *p, uint64_t len, uint64_t now, uint32_t *due) {
  if (op != 0) {
    if (c->in_frag) {
      fail(c, E_PROTOCOL, now, "a new message inside a fragmented one");
      return false;
    }
    c->msg_len = 0;
  } else if (!c->in_frag) {
    fail(c, E_PROTOCOL, now, "a continuation frame outside a message");
    return false;
  }
  if (c->msg_len < 8) {
    uint32_t take = 8 - c->msg_len;
    if (take > len) take = (uint32_t)len;
    memcpy(c->first8 + c->msg_len, p, take);
  }
  c->msg_len += (uint32_t)len;
  if (!fin) {
    if (c->msg_len > opt.size) {
      fail(c, E_BAD_ECHO, now, "a message longer than the %u bytes sent", opt.size);
      return false;
    }
    c->in_frag = true;
    return true;
  }
  c->in_frag = false;
  if (c->state != ST_OPEN) return true; /* echoes after our close frame are not counted */
  uint8_t want[8];
  stamp(want, c->seq_recv);
  if (c->msg_len != opt.size || c->outstanding == 0 || op == 2 || (op == 1 && memcmp(c->first8, want, 8) != 0)) {
    fail(c, E_BAD_ECHO, now, "echo %u: %u bytes, starting \"%.8s\" (expected %u bytes starting \"%.8s\")", c->seq_recv, c->msg_len,
         (const char *)c->first8, opt.size, (const char *)want);
    return false;
  }
  uint64_t sent_at = c->sent_ns[c->seq_recv % opt.inflight];
  c->seq_recv++;
  c->outstanding--;
  c->last_progress = now;
  if (measuring) {
    messages++;
    hdr_record(&latency, (int64_t)((now - sent_at) / 1000));
  }
  if (opt.mode == MODE_CLOSED) {
    (*due)++;
  } else {
    /* churn: one echo per cycle, then our close (the server closes the TCP connection first). */
    queue_close(c);
    c->state = ST_CLOSING;
    c->deadline = now + timeout_ns;
  }
  return true;
}

static bool save_pending(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
  if (n > c->pend_cap) {
    size_t cap = n < 4096 ? 4096 : n;
    uint8_t *q = realloc(c->pend, cap);
    if (q == NULL) {
      fail(c, E_SOCKET, now, "out of memory");
      return false;
    }
    c->pend = q;
    c->pend_cap = (uint32_t)cap;
  }
  memmove(c->pend, p, n);
  c->pend_len = (uint32_t)n;
  return true;
}

static inline uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

/* Everything read so far on c, parsed where it lies; false when the connection ended. */
static bool process(conn_t *c, const uint8_t *buf, size_t len, uint64_t now) {
  size_t pos = 0;
  if (c->state == ST_WAIT_EOF) return true; /* after the server's close frame, only its EOF matters */
  if (c->state == ST_HANDSHAKE) {
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
      if (len > HEAD_MAX) {
        fail(c, E_PROTOCOL, now, "a response head over %d bytes", HEAD_MAX);
        return false;
      }
      return save_pending(c, buf, len, now);
    }
    pos = (size_t)(end - buf) + 4;
    if (!check_head(c, buf, pos, now)) return false;
    handshake_done(c, now);
  }
  uint32_t due = 0;
  while (pos < len) {
    const uint8_t *f = buf + pos;
    size_t avail = len - pos;
    if (avail < 2) break;
    uint8_t b0 = f[0], b1 = f[1];
    if (b1 & 0x80) {
      fail(c, E_PROTOCOL, now, "a masked frame from the server");
      return false;
    }
    if (b0 & 0x70) {
      fail(c, E_PROTOCOL, now, "an RSV bit set (no extension was negotiated)");
      return false;
    }
    unsigned op = b0 & 0x0f;
    bool fin = (b0 & 0x80) != 0;
    uint64_t plen = b1 & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
      if (avail < 4) break;
      plen = ((uint64_t)f[2] << 8) | f[3];
      hl = 4;
    } else if (plen == 127) {
      if (avail < 10) break;
      plen = be64(f + 2);
      hl = 10;
    }
    /* Bounds before waiting for the payload: nothing longer than an echo is ever buffered. */
    if (op >= 8) {
      if (op > 10) {
        fail(c, E_PROTOCOL, now, "unknown opcode %u", op);
        return false;
      }
      if (!fin || plen > 125) {
        fail(c, E_PROTOCOL, now, "a fragmented or over-long control frame");
        return false;
      }
    } else if (op > 2) {
      fail(c, E_PROTOCOL, now, "unknown opcode %u", op);
      return false;
    } else if (plen > opt.size) {
      fail(c, E_BAD_ECHO, now, "a frame of %llu bytes, more than the %u sent", (unsigned long long)plen, opt.size);
      return false;
    }
    if (avail - hl < plen) break;
    const uint8_t *payload = f + hl;
    pos += hl + (size_t)plen;
    if (op < 8) {
      if (!on_data(c, op, fin, payload, plen, now, &due)) return false;
    } else if (op == 9) {
      if (!queue_control(c, 0xA, payload, (uint32_t)plen)) {
        fail(c, E_SOCKET, now, "out of memory");
        return false;
      }
    } else if (op == 8) {
      if (plen == 1) {
        fail(c, E_PROTOCOL, now, "a close frame with a 1-byte payload");
        return false;
      }
      if (c->state == ST_CLOSING) {
        /* Ours answered: the server ends the TCP connection next, and holds its TIME_WAIT. */
        c->state = ST_WAIT_EOF;
        c->deadline = now + timeout_ns;
        c->pend_len = 0;
        set_events(c);
        return true;
      }
      unsigned code = plen >= 2 ? ((unsigned)payload[0] << 8) | payload[1] : 1005;
      /* Answer with the same code before going; the close is the server's, so is the error. */
      uint8_t reply[2] = {(uint8_t)(code >> 8), (uint8_t)code};
      if (queue_control(c, 0x8, reply, plen >= 2 ? 2 : 0)) flush(c, now);
      if (c->fd >= 0) fail(c, E_CLOSED, now, "the server closed with code %u", code);
      return false;
    }
  }
  if (pos < len && !save_pending(c, buf + pos, len - pos, now)) return false;
  if (due > 0 && opt.mode == MODE_CLOSED && c->state == ST_OPEN && sending_allowed()) {
    if (!queue_messages(c, due, now)) {
      fail(c, E_SOCKET, now, "out of memory");
      return false;
    }
  }
  return flush(c, now);
}

static void on_eof(conn_t *c, uint64_t now) {
  if (c->state == ST_WAIT_EOF) conn_close(c, false, now);
  else fail(c, E_EOF, now, "the server ended the connection without a close frame");
}

static void on_readable(conn_t *c) {
  for (;;) {
    size_t have = c->pend_len;
    if (have > 0) memcpy(rbuf, c->pend, have);
    c->pend_len = 0;
    ssize_t n;
    do n = read(c->fd, rbuf + have, rcap - have);
    while (n < 0 && errno == EINTR);
    n_reads++;
    uint64_t now = now_ns();
    if (n < 0) {
      if (errno == EAGAIN) {
        c->pend_len = (uint32_t)have; /* pend still holds those bytes */
        return;
      }
      int e = errno;
      fail(c, errno_kind(e), now, "read: %s", strerror(e));
      return;
    }
    if (n == 0) {
      on_eof(c, now);
      return;
    }
    bool full = (size_t)n == rcap - have;
    if (!process(c, rbuf, have + (size_t)n, now)) return;
    if (!full || c->fd < 0 || c->state == ST_WAIT_EOF) return;
  }
}

static void on_event(conn_t *c, uint32_t ev) {
  if (c->state == ST_CONNECTING) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    uint64_t now = now_ns();
    int err = 0;
    socklen_t l = sizeof err;
    if ((ev & (EPOLLERR | EPOLLHUP)) && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err != 0) {
      fail(c, err == ECONNREFUSED ? E_REFUSED : errno_kind(err), now, "connect: %s", strerror(err));
      return;
    }
    c->state = ST_HANDSHAKE;
    if (!out_reserve(c, (uint32_t)request_len)) {
      fail(c, E_SOCKET, now, "out of memory");
      return;
    }
    memcpy(c->out + c->out_len, request, request_len);
    c->out_len += (uint32_t)request_len;
    flush(c, now);
    return;
  }
  if ((ev & EPOLLOUT) && c->out_len > c->out_off) {
    if (!flush(c, now_ns())) return;
  }
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
}

/* ---------- phases ---------- */

static struct rusage ru_start, ru_end;
static uint64_t t_meas_start, t_meas_end, t_plan_start, t_plan_end, t_teardown_deadline;
static uint64_t sc_start[3], sc_end[3];

static void measure_start(uint64_t now) {
  getrusage(RUSAGE_SELF, &ru_start);
  sc_start[0] = n_reads, sc_start[1] = n_writes, sc_start[2] = n_waits;
  t_meas_start = now;
  measuring = true;
  phase = PH_MEASURE;
  static const char line[] = "loadgen: measure start\n";
  if (write(2, line, sizeof line - 1) < 0) { /* nobody listening */
  }
}

static void measure_end(uint64_t now) {
  if (!measuring) return;
  measuring = false;
  t_meas_end = now;
  getrusage(RUSAGE_SELF, &ru_end);
  sc_end[0] = n_reads, sc_end[1] = n_writes, sc_end[2] = n_waits;
  static const char line[] = "loadgen: measure end\n";
  if (write(2, line, sizeof line - 1) < 0) { /* nobody listening */
  }
}

static void begin_teardown(uint64_t now) {
  phase = PH_TEARDOWN;
  t_teardown_deadline = now + timeout_ns + NS;
  for (uint32_t i = 0; i < opt.connections; i++) {
    conn_t *c = &conns[i];
    if (c->fd < 0) {
      if (c->state != ST_DONE) live--;
      c->state = ST_DONE;
      continue;
    }
    /* churn: cycles under way run to their end; closed: every connection closes with 1000. */
    if (opt.mode == MODE_CLOSED && c->state == ST_OPEN) {
      if (!queue_close(c)) {
        conn_close(c, false, now);
        continue;
      }
      c->state = ST_CLOSING;
      c->deadline = now + timeout_ns;
      flush(c, now);
    } else if (opt.mode == MODE_CLOSED && c->state < ST_OPEN) {
      conn_close(c, false, now);
    }
  }
}

static void scan(uint64_t now) {
  for (uint32_t i = 0; i < opt.connections; i++) {
    conn_t *c = &conns[i];
    if (c->state == ST_IDLE) {
      if (c->restart_at != 0 && now >= c->restart_at && phase < PH_TEARDOWN) start_connect(c, now);
      continue;
    }
    if (c->fd < 0) continue;
    if (c->state == ST_OPEN && opt.mode == MODE_CLOSED) {
      if (c->outstanding > 0 && now - c->last_progress > timeout_ns) fail(c, E_TIMEOUT, now, "no echo for %g s", opt.timeout);
    } else if (c->deadline != 0 && now > c->deadline) {
      fail(c, E_TIMEOUT, now, "nothing for %g s", opt.timeout);
    }
  }
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void build_frames(void) {
  uint32_t size = opt.size;
  uint32_t hl = size <= 125 ? 2 : size <= 65535 ? 4 : 10;
  payload_at = hl + 4;
  frame_len = payload_at + size;
  tmpl = malloc(frame_len);
  if (tmpl == NULL) {
    fputs("loadgen: out of memory\n", stderr);
    exit(2);
  }
  tmpl[0] = 0x81; /* FIN, text */
  if (hl == 2) tmpl[1] = (uint8_t)(0x80 | size);
  else if (hl == 4) {
    tmpl[1] = 0x80 | 126;
    tmpl[2] = (uint8_t)(size >> 8);
    tmpl[3] = (uint8_t)size;
  } else {
    tmpl[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) tmpl[2 + i] = (uint8_t)((uint64_t)size >> (56 - 8 * i));
  }
  /* An all-zero mask key: valid, and nothing to XOR. */
  memset(tmpl + hl, 0, 4);
  memset(tmpl + payload_at, 'x', size);
  request_len = (size_t)snprintf(request, sizeof request,
                                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                 opt.path, opt.host, KEY);
}

static void selftest(void) {
  static hdr_t h;
  for (int64_t v = 1; v <= 10000; v++) hdr_record(&h, v);
  hdr_json(stdout, &h);
  fputc('\n', stdout);
  exit(0);
}

static double tv_us(struct timeval a, struct timeval b) { return (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_usec - a.tv_usec); }

static void report(void) {
  double wall_us = t_meas_end > t_meas_start ? (double)(t_meas_end - t_meas_start) / 1000.0 : 0;
  double secs = wall_us / 1e6;
  FILE *o = stdout;
  fprintf(o, "{\"mode\":\"%s\",\"connections\":%u,\"inflight\":%u,\"size\":%u,\"durationS\":%g,\"warmupS\":%g,", opt.mode == MODE_CLOSED ? "closed" : "churn",
          opt.connections, opt.inflight, opt.size, opt.duration, opt.warmup);
  fprintf(o, "\"sources\":[");
  for (int i = 0; i < opt.nsources; i++) fprintf(o, "%s\"%s\"", i > 0 ? "," : "", inet_ntoa(opt.sources[i]));
  fprintf(o, "],\"connectionsOpened\":%llu", (unsigned long long)opened);
  fprintf(o, ",\"messages\":%llu,\"msgPerSec\":%.1f,\"sent\":%llu,\"handshakes\":%llu,\"hsPerSec\":%.1f,", (unsigned long long)messages,
          secs > 0 ? (double)messages / secs : 0, (unsigned long long)sent, (unsigned long long)handshakes, secs > 0 ? (double)handshakes / secs : 0);
  fprintf(o, "\"latencyUs\":");
  hdr_json(o, &latency);
  fprintf(o, ",\"handshakeUs\":");
  hdr_json(o, &hs_latency);
  fprintf(o, ",\"errors\":{");
  bool first = true;
  for (int k = 0; k < E_KINDS; k++) {
    if (errors[k] == 0) continue;
    fprintf(o, "%s\"%s\":%llu", first ? "" : ",", ERR_NAMES[k], (unsigned long long)errors[k]);
    first = false;
  }
  bool measured = t_meas_end > t_meas_start;
  fprintf(o, "},\"cpuUs\":{\"user\":%.0f,\"sys\":%.0f},\"wallUs\":%.0f,", measured ? tv_us(ru_start.ru_utime, ru_end.ru_utime) : 0,
          measured ? tv_us(ru_start.ru_stime, ru_end.ru_stime) : 0, wall_us);
  fprintf(o, "\"syscalls\":{\"reads\":%llu,\"writes\":%llu,\"epollWaits\":%llu}}\n", (unsigned long long)(sc_end[0] - sc_start[0]),
          (unsigned long long)(sc_end[1] - sc_start[1]), (unsigned long long)(sc_end[2] - sc_start[2]));
  fflush(o);
}

int main(int argc, char **argv) {
  const char *url = NULL;
  bool source_set = false, sources_set = false;
  struct in_addr first_source = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--selftest") == 0) selftest();
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(USAGE, stdout);
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) {
      if (url != NULL) usage("more than one URL");
      url = a;
      continue;
    }
    if (i + 1 >= argc) usage("%s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--mode") == 0) {
      if (strcmp(v, "closed") == 0) opt.mode = MODE_CLOSED;
      else if (strcmp(v, "churn") == 0) opt.mode = MODE_CHURN;
      else usage("--mode: closed or churn, got \"%s\"", v);
      opt.mode_set = true;
    } else if (strcmp(a, "--connections") == 0) opt.connections = int_arg(a, v, 1, MAX_CONNECTIONS);
    else if (strcmp(a, "--inflight") == 0) opt.inflight = int_arg(a, v, 1, MAX_INFLIGHT);
    else if (strcmp(a, "--size") == 0) opt.size = int_arg(a, v, 1, MAX_SIZE);
    else if (strcmp(a, "--duration") == 0) opt.duration = seconds_arg(a, v, 0.001, MAX_SECONDS);
    else if (strcmp(a, "--warmup") == 0) opt.warmup = seconds_arg(a, v, 0, MAX_SECONDS);
    else if (strcmp(a, "--timeout") == 0) opt.timeout = seconds_arg(a, v, 0.01, 60);
    else if (strcmp(a, "--cpu") == 0) opt.cpu = (int)int_arg(a, v, 0, CPU_SETSIZE - 1);
    else if (strcmp(a, "--sources") == 0) {
      opt.nsources = (int)int_arg(a, v, 1, MAX_SOURCES);
      sources_set = true;
    } else if (strcmp(a, "--source") == 0) {
      if (inet_pton(AF_INET, v, &first_source) != 1 || !loopback(first_source)) usage("--source: a 127.x.x.x address, got \"%s\"", v);
      source_set = true;
    } else usage("unknown option %s", a);
  }
  if (url == NULL) usage("no URL");
  if (!opt.mode_set) usage("--mode is required");
  parse_url(url);
  if (opt.size < 8) opt.size = 8; /* room for the sequence stamp */
  if (opt.mode == MODE_CHURN) opt.inflight = 1;
  if ((uint64_t)opt.connections * opt.inflight * (opt.size + 14) > (1ull << 30)) usage("connections × inflight × size over 1 GiB");
  if (!sources_set) opt.nsources = opt.mode == MODE_CHURN ? 8 : 1;
  if (!source_set) {
    /* A fresh 127.A.B.x each run: bind() gets slow on an address still holding a previous run's TIME_WAITs. */
    uint16_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint16_t)(getpid() ^ time(NULL));
    first_source.s_addr = htonl((127u << 24) | ((uint32_t)(1 + r % 254) << 16) | ((uint32_t)(1 + (r >> 8) % 254) << 8) | 2u);
  }
  uint32_t base = ntohl(first_source.s_addr);
  if ((base & 0xff) + (uint32_t)opt.nsources - 1 > 254 || (base & 0xff) == 0) usage("--source/--sources: the addresses must stay within 127.A.B.1-254");
  for (int i = 0; i < opt.nsources; i++) opt.sources[i].s_addr = htonl(base + (uint32_t)i);

  if (opt.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(opt.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) usage("--cpu %d: %s", opt.cpu, strerror(errno));
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.connections + 64) {
    rl.rlim_cur = rl.rlim_max < opt.connections + 64 ? rl.rlim_max : opt.connections + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < opt.connections + 16) usage("--connections %u: the open-files limit is %llu", opt.connections, (unsigned long long)rl.rlim_cur);
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  build_frames();
  timeout_ns = (uint64_t)(opt.timeout * 1e9);
  rcap = 256 * 1024;
  if (rcap < 4 * (size_t)frame_len) rcap = 4 * (size_t)frame_len;
  rbuf = malloc(rcap);
  conns = calloc(opt.connections, sizeof *conns);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (rbuf == NULL || conns == NULL || ep < 0) {
    fputs("loadgen: out of memory or epoll\n", stderr);
    return 2;
  }
  for (uint32_t i = 0; i < opt.connections; i++) {
    conns[i].fd = -1;
    conns[i].idx = i;
    conns[i].state = ST_IDLE;
    conns[i].sent_ns = calloc(opt.inflight, sizeof(uint64_t));
    if (conns[i].sent_ns == NULL) {
      fputs("loadgen: out of memory\n", stderr);
      return 2;
    }
  }

  live = opt.connections;
  uint64_t now = now_ns();
  /* closed: the connections open first (at most OPEN_CONCURRENCY handshakes at once), then the clock
     starts; churn: every slot starts cycling at once and the warm-up runs from there. */
  uint64_t setup_deadline = now + timeout_ns + 60 * NS;
  if (opt.mode == MODE_CHURN) {
    phase = PH_WARMUP;
    t_plan_start = now + (uint64_t)(opt.warmup * 1e9);
    t_plan_end = t_plan_start + (uint64_t)(opt.duration * 1e9);
    for (uint32_t i = 0; i < opt.connections; i++) start_connect(&conns[i], now);
  } else {
    phase = PH_SETUP;
  }
  uint64_t next_scan = now + SCAN_NS;
  static struct epoll_event events[512];
  for (;;) {
    now = now_ns();
    if (stop_requested && phase < PH_TEARDOWN) {
      measure_end(now);
      begin_teardown(now);
    }
    if (phase == PH_SETUP) {
      while (next_open < opt.connections && hs_in_flight < OPEN_CONCURRENCY) start_connect(&conns[next_open++], now);
      if ((next_open == opt.connections && hs_in_flight == 0) || now > setup_deadline) {
        for (uint32_t i = 0; i < opt.connections; i++)
          if (conns[i].fd >= 0 && conns[i].state < ST_OPEN) fail(&conns[i], E_TIMEOUT, now, "not open when the setup ended");
        phase = PH_WARMUP;
        t_plan_start = now + (uint64_t)(opt.warmup * 1e9);
        t_plan_end = t_plan_start + (uint64_t)(opt.duration * 1e9);
      }
    }
    if (phase == PH_WARMUP && now >= t_plan_start) measure_start(now);
    if (phase == PH_MEASURE && now >= t_plan_end) {
      measure_end(now);
      begin_teardown(now);
    }
    if ((phase == PH_WARMUP || phase == PH_MEASURE) && opt.mode == MODE_CLOSED && live == 0) {
      /* Every connection failed: nothing left to measure. */
      measure_end(now);
      begin_teardown(now);
    }
    if (phase == PH_TEARDOWN && (open_fds == 0 || now >= t_teardown_deadline)) break;
    if (now >= next_scan) {
      scan(now);
      next_scan = now + SCAN_NS;
    }
    uint64_t wake = next_scan;
    if (phase == PH_WARMUP && t_plan_start < wake) wake = t_plan_start;
    if (phase == PH_MEASURE && t_plan_end < wake) wake = t_plan_end;
    int wait_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
    int n = epoll_wait(ep, events, (int)(sizeof events / sizeof events[0]), wait_ms);
    n_waits++;
    for (int i = 0; i < n; i++) {
      uint64_t d = events[i].data.u64;
      conn_t *c = &conns[(uint32_t)d];
      if (c->fd < 0 || c->gen != (uint32_t)(d >> 32)) continue;
      on_event(c, events[i].events);
    }
  }
  /* Stragglers (a close not answered in time) are cut. */
  for (uint32_t i = 0; i < opt.connections; i++) {
    conn_t *c = &conns[i];
    if (c->fd >= 0) {
      if (c->state == ST_CLOSING) fail(c, E_TIMEOUT, now, "our close was not answered within %g s", opt.timeout);
      else conn_close(c, false, now);
    }
    free(c->out);
    free(c->pend);
    free(c->sent_ns);
  }
  close(ep);
  if (!measuring && t_meas_end == 0) t_meas_end = t_meas_start; /* never measured */
  report();
  uint64_t total = 0;
  for (int k = 0; k < E_KINDS; k++) total += errors[k];
  free(conns);
  free(rbuf);
  free(tmpl);
  return total > 0 ? 1 : 0;
}
