// echo: a single-threaded WebSocket echo backend for the benchmark suite (bench/README.md,
// "The C load generator"). The suite's load side is this backend and the load generator, on one
// core; with `wsgate echo` (Node) the backend alone cost about as much per echo as nginx does, so
// the load side ran out of core before the proxy did. This one does the same in a few µs: epoll,
// every frame that arrives in one read echoed in one write, payloads unmasked as they stream
// through (a frame is never held whole, so any size goes).
//
//   echo --port P [--cpu N]      (P = 0: any free port)
//
// It prints "listening on ws://127.0.0.1:PORT/" once it accepts. Like `wsgate echo`: data frames
// come back as sent (opcode, fragmentation and payload, unmasked), a ping gets its pong, a close
// gets a close with the same code and then the connection ends. A request that is not a WebSocket
// upgrade gets 400, a protocol error (an unmasked client frame, a bad length) a close 1002.
// Loopback only: it binds 127.0.0.1.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX 65536
#define HEAD_MAX 8192
// Past this much unsent output a connection is not read until it drains (the peer is slow).
#define OUT_HIGH (4u << 20)

// ---- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept -------------------------------

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else f = b ^ c ^ d, k = 0xCA62C1D6;
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

// msg is short (a key and the GUID): at most two blocks with the padding.
static void sha1(const uint8_t *msg, size_t n, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  uint8_t buf[128] = {0};
  size_t full = n / 64 * 64;
  for (size_t i = 0; i < full; i += 64) sha1_block(h, msg + i);
  size_t rest = n - full;
  memcpy(buf, msg + full, rest);
  buf[rest] = 0x80;
  size_t total = rest + 9 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;
  for (int i = 0; i < 8; i++) buf[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t i = 0; i < total; i += 64) sha1_block(h, buf + i);
  for (int i = 0; i < 5; i++) out[4 * i] = h[i] >> 24, out[4 * i + 1] = h[i] >> 16, out[4 * i + 2] = h[i] >> 8, out[4 * i + 3] = h[i];
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = t[v >> 18 & 63];
    out[o++] = t[v >> 12 & 63];
    out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? t[v & 63] : '=';
  }
  out[o] = 0;
}

// ---- connections ----------------------------------------------------------------------------

typedef struct {
  int fd;
  bool open;          // past the handshake
  bool closing;       // a close was answered (or a protocol error sent): end once the output is out
  bool reading;       // EPOLLIN is on
  bool writing;       // EPOLLOUT is on
  bool in_payload;    // reading a frame's payload, not its header
  char *head;         // the request head while it arrives
  size_t head_len;
  uint8_t hdr[14];    // the frame header being read
  uint8_t hdr_len;
  uint8_t opcode;     // of the frame whose payload is streaming through
  uint8_t mask[4];
  uint8_t mask_pos;
  uint64_t left;      // payload bytes of that frame still to come
  uint8_t ctrl[125];  // a control frame's payload, answered once complete
  uint8_t ctrl_len;
  uint8_t *out;
  size_t out_off, out_len, out_cap;
} conn_t;

static int ep;
static uint8_t rbuf[READ_MAX];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void drop(conn_t *c) {
  close(c->fd);  // also leaves the epoll set
  free(c->head);
  free(c->out);
  free(c);
}

static void watch(conn_t *c) {
  bool want_read = !c->closing && c->out_len - c->out_off < OUT_HIGH;
  bool want_write = c->out_len > c->out_off;
  if (want_read == c->reading && want_write == c->writing) return;
  c->reading = want_read;
  c->writing = want_write;
  struct epoll_event ev = {.events = (want_read ? EPOLLIN : 0) | (want_write ? EPOLLOUT : 0) | EPOLLRDHUP, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static bool reserve(conn_t *c, size_t n) {
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  if (c->out_len + n <= c->out_cap) return true;
  size_t cap = c->out_cap < 4096 ? 4096 : c->out_cap;
  while (cap < c->out_len + n) cap *= 2;
  uint8_t *p = realloc(c->out, cap);
  if (p == NULL) return false;
  c->out = p;
  c->out_cap = cap;
  return true;
}

static bool put(conn_t *c, const void *p, size_t n) {
  if (!reserve(c, n)) return false;
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  return true;
}

// A server frame header (never masked).
static bool put_header(conn_t *c, uint8_t first, uint64_t len) {
  uint8_t h[10];
  size_t n;
  h[0] = first;
  if (len < 126) h[1] = (uint8_t)len, n = 2;
  else if (len < 65536) h[1] = 126, h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len, n = 4;
  else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  return put(c, h, n);
}

static void protocol_error(conn_t *c) {
  static const uint8_t close1002[] = {0x88, 0x02, 0x03, 0xEA};
  put(c, close1002, sizeof close1002);
  c->closing = true;
}

// Returns false when the connection is to be dropped now.
static bool flush(conn_t *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    c->out_off += (size_t)n;
  }
  c->out_off = c->out_len = 0;
  return !c->closing;
}

static bool handshake(conn_t *c, const uint8_t *p, size_t n, size_t *used) {
  size_t room = HEAD_MAX - c->head_len;
  size_t take = n < room ? n : room;
  if (c->head == NULL && (c->head = malloc(HEAD_MAX + 1)) == NULL) return false;
  memcpy(c->head + c->head_len, p, take);
  size_t before = c->head_len;
  c->head_len += take;
  c->head[c->head_len] = 0;
  char *end = strstr(c->head, "\r\n\r\n");
  if (end == NULL) {
    *used = take;
    if (c->head_len < HEAD_MAX) return true;
    static const char too_large[] = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    put(c, too_large, sizeof too_large - 1);
    c->closing = true;
    return true;
  }
  size_t head_len = (size_t)(end - c->head) + 4;
  *used = head_len - before;  // what follows the head is frames
  const char *key = NULL;
  size_t key_len = 0;
  for (char *line = strstr(c->head, "\r\n"); line != NULL && line < end; line = strstr(line + 2, "\r\n")) {
    char *name = line + 2;
    if (strncasecmp(name, "sec-websocket-key:", 18) != 0) continue;
    const char *v = name + 18;
    while (*v == ' ' || *v == '\t') v++;
    const char *e = strstr(v, "\r\n");
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    key = v;
    key_len = (size_t)(e - v);
    break;
  }
  if (key == NULL || key_len == 0 || key_len > 64) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    put(c, bad, sizeof bad - 1);
    c->closing = true;
    return true;
  }
  uint8_t in[64 + 36], digest[20];
  memcpy(in, key, key_len);
  memcpy(in + key_len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  sha1(in, key_len + 36, digest);
  char accept[32];
  base64(digest, 20, accept);
  char answer[160];
  int len = snprintf(answer, sizeof answer, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
  free(c->head);
  c->head = NULL;
  c->open = true;
  return put(c, answer, (size_t)len);
}

// A complete control frame: a ping gets its pong, a close the same code, then the end.
static bool control(conn_t *c) {
  switch (c->opcode) {
    case 0x9:
      return put_header(c, 0x8A, c->ctrl_len) && put(c, c->ctrl, c->ctrl_len);
    case 0xA:
      return true;
    case 0x8:
      c->closing = true;
      return put_header(c, 0x88, c->ctrl_len >= 2 ? 2 : 0) && put(c, c->ctrl, c->ctrl_len >= 2 ? 2 : 0);
    default:
      protocol_error(c);
      return true;
  }
}

// The frames in p[0..n): data payloads stream through unmasked, control frames are answered.
static bool frames(conn_t *c, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && !c->closing) {
    if (!c->in_payload) {
      // A header: collected here only when it is cut across reads, else taken in one piece.
      if (c->hdr_len < 2) {
        c->hdr[c->hdr_len++] = p[i++];
        continue;
      }
      if (!(c->hdr[1] & 0x80)) {
        protocol_error(c);  // clients mask every frame
        return true;
      }
      uint8_t l7 = c->hdr[1] & 0x7F;
      size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
      size_t take = need - c->hdr_len < n - i ? need - c->hdr_len : n - i;
      memcpy(c->hdr + c->hdr_len, p + i, take);
      c->hdr_len += (uint8_t)take;
      i += take;
      if (c->hdr_len < need) return true;
      uint64_t len = l7;
      if (l7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      else if (l7 == 127) {
        len = 0;
        for (int k = 0; k < 8; k++) len = len << 8 | c->hdr[2 + k];
      }
      uint8_t op = c->hdr[0] & 0x0F;
      if ((l7 == 127 && len >> 63) || (op >= 3 && op <= 7) || (op >= 8 && (len > 125 || !(c->hdr[0] & 0x80)))) {
        protocol_error(c);
        return true;
      }
      memcpy(c->mask, c->hdr + need - 4, 4);
      c->mask_pos = 0;
      c->opcode = op;
      c->hdr_len = 0;
      c->left = len;
      c->ctrl_len = 0;
      if (op < 8 && !put_header(c, c->hdr[0], len)) return false;
      c->in_payload = len > 0;
      if (len == 0 && op >= 8 && !control(c)) return false;
      continue;
    }
    size_t take = c->left < n - i ? (size_t)c->left : n - i;
    uint8_t *dst;
    if (c->opcode >= 8) dst = c->ctrl + c->ctrl_len;
    else {
      if (!reserve(c, take)) return false;
      dst = c->out + c->out_len;
      c->out_len += take;
    }
    const uint8_t *src = p + i;
    if ((c->mask[0] | c->mask[1] | c->mask[2] | c->mask[3]) == 0) memcpy(dst, src, take);
    else
      for (size_t k = 0; k < take; k++) dst[k] = src[k] ^ c->mask[(c->mask_pos + k) & 3];
    c->mask_pos = (uint8_t)((c->mask_pos + take) & 3);
    i += take;
    c->left -= take;
    if (c->opcode >= 8) c->ctrl_len += (uint8_t)take;
    if (c->left == 0) {
      c->in_payload = false;
      if (c->opcode >= 8 && !control(c)) return false;
    }
  }
  return true;
}

// Returns false when the connection is to be dropped now.
static bool on_readable(conn_t *c) {
  for (int round = 0; round < 16; round++) {
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    size_t used = 0;
    if (!c->open && !handshake(c, rbuf, (size_t)n, &used)) return false;
    if (c->open && used < (size_t)n && !frames(c, rbuf + used, (size_t)n - used)) return false;
    if (c->closing || c->out_len - c->out_off >= OUT_HIGH || (size_t)n < sizeof rbuf) break;
  }
  // Everything this read produced goes out in one write.
  if (!flush(c) && (c->closing ? c->out_off == c->out_len : true)) return false;
  watch(c);
  return true;
}

static void on_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->reading = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) drop(c);
  }
}

int main(int argc, char **argv) {
  int port = -1, cpu = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--cpu") == 0) cpu = atoi(argv[i + 1]);
  }
  if (port < 0 || port > 65535 || argc % 2 == 0) {
    fprintf(stderr, "usage: echo --port P [--cpu N]\n");
    return 2;
  }
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4096) != 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
    perror("echo: listen");
    return 1;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("listening on ws://127.0.0.1:%d/\n", ntohs(a.sin_port));
  fflush(stdout);
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 1000);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c == NULL) {
        on_accept(lfd);
        continue;
      }
      uint32_t e = evs[i].events;
      bool keep = true;
      if (e & (EPOLLERR | EPOLLHUP)) keep = false;
      else {
        if ((e & EPOLLOUT) && !flush(c)) keep = c->out_off < c->out_len;  // a close still going out
        else if (e & EPOLLOUT) watch(c);
        if (keep && (e & (EPOLLIN | EPOLLRDHUP)) && c->reading) keep = on_readable(c);
      }
      if (!keep) drop(c);
    }
  }
  return 0;
}
