// The inspect core's frame tracker: src/relay/frame-parser.ts in C, with
// the same states, events, rules, error codes and texts (see that file for
// the contract and the decisions: lengths not minimally encoded are taken,
// a 64-bit length above 2^53-1 is refused with 1009, a close reason must be
// UTF-8). It reads frame headers and steps over payload bytes without
// touching them; only control-frame payloads (at most 125 bytes) are
// unmasked, into the tracker.
//
// And the UTF-8 check for text messages (relay.validateUtf8). A state
// machine over the unmasked bytes, instead of src/relay/utf8-stream.ts's
// unmasked copy and buffer.isUtf8, but it fails at the same byte range as
// Utf8Stream does, because the relay cuts a stream where the check fails:
// Utf8Stream holds back a character unfinished at the end of each piece, so
// the bad second byte of a 3- or 4-byte sequence (an overlong form, a
// surrogate, above U+10FFFF) is seen only once the sequence's length is
// reached, or a byte that is no continuation comes, or the message ends.
// Here such a byte "poisons" its sequence, which fails at those points.

#include "frame-tracker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Tracker states, as in frame-parser.ts.
enum { GET_HEADER = 0, SKIP_DATA = 1, GET_CONTROL = 2, CLOSED = 3, FAILED = 4 };
#define MAX_SAFE_HIGH_WORD 0x1fffffu

// ---- UTF-8 ------------------------------------------------------------------------

int utf8_write(utf8_t* u, const uint8_t* p, size_t n, const uint8_t key[4], int64_t phase) {
  // The key as it falls on p[i]: k[(i & 3) + j] for p[i + j]; and as
  // 8-byte words for each of the four alignments, for the ASCII run below.
  uint8_t k[12];
  for (int j = 0; j < 12; j++) k[j] = key[(phase + j) & 3];
  uint64_t k8[4];
  for (int j = 0; j < 4; j++) memcpy(&k8[j], k + j, 8);
  size_t i = 0;
  while (i < n) {
    if (u->need == 0) {
      // ASCII, 8 bytes at a time.
      while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (((w ^ k8[i & 3]) & 0x8080808080808080ull) != 0) break;
        i += 8;
      }
      if (i >= n) break;
    }
    uint8_t b = p[i] ^ k[i & 3];
    i++;
    if (u->need == 0) {
      if (b < 0x80) continue;
      if (b < 0xc2) return 0;
      if (b < 0xe0) {
        u->need = 1;
        u->lo = 0x80;
        u->hi = 0xbf;
      } else if (b < 0xf0) {
        u->need = 2;
        u->lo = b == 0xe0 ? 0xa0 : 0x80;
        u->hi = b == 0xed ? 0x9f : 0xbf;
      } else if (b < 0xf5) {
        u->need = 3;
        u->lo = b == 0xf0 ? 0x90 : 0x80;
        u->hi = b == 0xf4 ? 0x8f : 0xbf;
      } else {
        return 0;
      }
      u->poisoned = 0;
    } else {
      if ((b & 0xc0) != 0x80) return 0;
      if (b < u->lo || b > u->hi) u->poisoned = 1;
      u->lo = 0x80;
      u->hi = 0xbf;
      if (--u->need == 0 && u->poisoned) return 0;
    }
  }
  return 1;
}

/** The message ended: false if a character was left unfinished. Ready for the next one. */
int utf8_end(utf8_t* u) {
  int ok = u->need == 0;
  memset(u, 0, sizeof *u);
  return ok;
}

int utf8_valid(const uint8_t* p, size_t n) {
  static const uint8_t nokey[4];
  utf8_t u = {0};
  return utf8_write(&u, p, n, nokey, 0) && utf8_end(&u);
}

// ---- the tracker --------------------------------------------------------------------

void tracker_init(tracker_t* t, int from_client, int rsv1_allowed, int64_t max_message, const tracker_events_t* ev, void* ctx) {
  memset(t, 0, sizeof *t);
  t->from_client = from_client;
  t->rsv1_allowed = rsv1_allowed;
  t->max_message = max_message;
  t->ev = ev;
  t->ctx = ctx;
}

static int header_size(uint8_t b1) {
  int len7 = b1 & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0);
}

enum { ERR_TEXT_MAX = 128, CTL_MAX = 125 };

static int tracker_fail(tracker_t* t, int code, const char* ecode, const char* text) {
  t->state = FAILED;
  t->close_code = code;
  t->err = ecode;
  // Once per tracker at most: a failed tracker scans no more.
  if (t->err_text == NULL) t->err_text = malloc(ERR_TEXT_MAX);
  if (t->err_text != NULL) snprintf(t->err_text, ERR_TEXT_MAX, "%s", text);
  return code;
}

void tracker_release(tracker_t* t) {
  free(t->ctl);
  free(t->err_text);
  t->ctl = NULL;
  t->err_text = NULL;
}

static int valid_close_code(int code) {
  return (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) || (code >= 3000 && code <= 4999);
}

static int parse_header(tracker_t* t, const uint8_t* buf) {
  int b0 = buf[0], b1 = buf[1];
  int opcode = b0 & 0x0f;
  int fin = (b0 & 0x80) != 0;
  int rsv1 = (b0 & 0x40) != 0;
  int len7 = b1 & 0x7f;
  char text[128];

  if ((b0 & 0x30) != 0) {
    return tracker_fail(t, 1002, "RSV2_RSV3_SET", "RFC 6455 §5.2: RSV2 and RSV3 must be 0 unless an extension defines them");
  }
  if (opcode >= 0x8) {
    if (opcode > 0xa) {
      snprintf(text, sizeof text, "RFC 6455 §5.2: opcode 0x%x is reserved", opcode);
      return tracker_fail(t, 1002, "RESERVED_OPCODE", text);
    }
    if (!fin) return tracker_fail(t, 1002, "CONTROL_FRAGMENTED", "RFC 6455 §5.5: control frames must not be fragmented (FIN must be set)");
    if (rsv1) return tracker_fail(t, 1002, "RSV1_ON_CONTROL", "RFC 7692 §6: RSV1 must be 0 on control frames");
    if (len7 > 125) return tracker_fail(t, 1002, "CONTROL_TOO_LONG", "RFC 6455 §5.5: control frame payload must be 125 bytes or less");
    if (opcode == OP_CLOSE && len7 == 1) {
      return tracker_fail(t, 1002, "CLOSE_PAYLOAD_ONE_BYTE", "RFC 6455 §5.5.1: a Close payload starts with a 2-byte status code");
    }
  } else if (opcode == OP_CONT) {
    if (t->msg_opcode == 0) {
      return tracker_fail(t, 1002, "UNEXPECTED_CONTINUATION", "RFC 6455 §5.4: continuation frame without a message in progress");
    }
    if (rsv1) return tracker_fail(t, 1002, "RSV1_ON_CONTINUATION", "RFC 7692 §6.1: RSV1 is set only on the first frame of a message");
  } else if (opcode <= OP_BIN) {
    if (t->msg_opcode != 0) {
      return tracker_fail(t, 1002, "MESSAGE_IN_PROGRESS", "RFC 6455 §5.4: new data frame while a fragmented message is in progress");
    }
    if (rsv1 && !t->rsv1_allowed) {
      return tracker_fail(t, 1002, "RSV1_NOT_NEGOTIATED", "RFC 6455 §5.2: RSV1 must be 0 when no extension was negotiated");
    }
  } else {
    snprintf(text, sizeof text, "RFC 6455 §5.2: opcode 0x%x is reserved", opcode);
    return tracker_fail(t, 1002, "RESERVED_OPCODE", text);
  }

  int masked = (b1 & 0x80) != 0;
  if (masked != t->from_client) {
    return t->from_client ? tracker_fail(t, 1002, "MASK_REQUIRED", "RFC 6455 §5.1: a client must mask every frame it sends")
                          : tracker_fail(t, 1002, "MASK_FORBIDDEN", "RFC 6455 §5.1: a server must not mask any frame it sends");
  }

  int64_t length = len7;
  const uint8_t* p = buf + 2;
  if (len7 == 126) {
    length = p[0] << 8 | p[1];
    p += 2;
  } else if (len7 == 127) {
    uint32_t high = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t low = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    if (high > 0x7fffffffu) {
      return tracker_fail(t, 1002, "LENGTH_MSB_SET", "RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0");
    }
    if (high > MAX_SAFE_HIGH_WORD) return tracker_fail(t, 1009, "LENGTH_UNSUPPORTED", "payload length above 2^53-1 is not supported");
    length = (int64_t)high << 32 | low;
    p += 8;
  }

  t->opcode = opcode;
  t->remaining = length;
  if (opcode >= 0x8) {
    if (masked) memcpy(t->ctl_mask, p, 4);
    else memset(t->ctl_mask, 0, 4);
    t->ctl_len = 0;
    // Most sessions never see a control frame with a payload: their trackers hold no buffer for one.
    if (length > 0 && t->ctl == NULL && (t->ctl = malloc(CTL_MAX)) == NULL)
      return tracker_fail(t, 1011, "OUT_OF_MEMORY", "no memory for a control frame's payload");
    t->state = GET_CONTROL;
    return 0;
  }
  if (opcode != OP_CONT) {
    t->msg_opcode = opcode;
    t->msg_bytes = 0;
    t->msg_rsv1 = rsv1;
  }
  t->msg_bytes += length;
  if (t->max_message > 0 && t->msg_bytes > t->max_message) {
    snprintf(text, sizeof text, "message exceeds %lld bytes (RFC 6455 §7.4.1, code 1009)", (long long)t->max_message);
    return tracker_fail(t, 1009, "MESSAGE_TOO_BIG", text);
  }
  if (t->ev->message_start != NULL && opcode != OP_CONT) t->ev->message_start(t->ctx, t->frame_start);
  if (t->ev->payload != NULL) {
    if (masked) memcpy(t->data_mask, p, 4);
    else memset(t->data_mask, 0, 4);
    t->frame_len = length;
  }
  t->fin = fin;
  t->state = SKIP_DATA;
  return 0;
}

static void end_data_frame(tracker_t* t, int64_t end) {
  t->state = GET_HEADER;
  t->last_boundary = end;
  if (!t->fin) return;
  int opcode = t->msg_opcode;
  int64_t bytes = t->msg_bytes;
  t->msg_opcode = 0;
  t->msg_bytes = 0;
  t->ev->message(t->ctx, opcode, bytes);
}

static int end_control_frame(tracker_t* t, int64_t end) {
  int n = t->ctl_len;
  if (t->opcode == OP_CLOSE) {
    if (n >= 2) {
      int code = t->ctl[0] << 8 | t->ctl[1];
      if (!valid_close_code(code)) {
        char text[128];
        snprintf(text, sizeof text, "RFC 6455 §7.4: close code %d is not valid on the wire", code);
        return tracker_fail(t, 1002, "INVALID_CLOSE_CODE", text);
      }
      if (n > 2 && !utf8_valid(t->ctl + 2, (size_t)(n - 2))) {
        return tracker_fail(t, 1007, "INVALID_CLOSE_REASON", "RFC 6455 §5.5.1: the close reason must be valid UTF-8");
      }
    }
    t->state = CLOSED;
  } else {
    t->state = GET_HEADER;
  }
  t->last_boundary = end;
  t->ev->control(t->ctx, t->opcode, t->ctl, n, t->frame_start, end);
  return 0;
}

/** frame-parser.ts's scan(): 0, or the close code to fail the connection with. */
int tracker_scan(tracker_t* t, const uint8_t* chunk, int64_t len) {
  void (*payload)(void*, const uint8_t*, int64_t, int64_t, int64_t, int64_t) = t->ev->payload;
  int state = t->state;
  if (state == SKIP_DATA && t->remaining > len) {
    if (payload != NULL) payload(t->ctx, chunk, 0, len, t->frame_len - t->remaining, t->frame_start);
    t->remaining -= len;
    t->frame_start -= len;
    t->last_boundary = -1;
    return 0;
  }
  if (state >= CLOSED) {
    t->last_boundary = state == CLOSED ? 0 : -1;
    return t->close_code;
  }
  t->last_boundary = state == GET_HEADER && t->hdr_len == 0 ? 0 : -1;
  int64_t pos = 0;
  while (pos < len) {
    int s = t->state;
    if (s == SKIP_DATA) {
      int64_t rem = t->remaining;
      if (payload != NULL) payload(t->ctx, chunk, pos, rem > len - pos ? len : pos + rem, t->frame_len - rem, t->frame_start);
      if (rem > len - pos) {
        t->remaining = rem - (len - pos);
        break;
      }
      pos += rem;
      t->remaining = 0;
      end_data_frame(t, pos);
    } else if (s == GET_HEADER) {
      int parsed = 0;
      if (t->hdr_len == 0) {
        t->frame_start = pos;
        // Fast path: the whole header is in this chunk; read it in place.
        if (len - pos >= 2) {
          int need = header_size(chunk[pos + 1]);
          if (len - pos >= need) {
            if (parse_header(t, chunk + pos) != 0) return t->close_code;
            pos += need;
            parsed = 1;
          }
        }
      }
      if (!parsed) {
        // A header split across chunks: at most 14 bytes carried.
        while (pos < len) {
          t->hdr[t->hdr_len++] = chunk[pos++];
          if (t->hdr_len == 2) t->hdr_need = header_size(t->hdr[1]);
          if (t->hdr_len >= 2 && t->hdr_len == t->hdr_need) {
            t->hdr_len = 0;
            if (parse_header(t, t->hdr) != 0) return t->close_code;
            parsed = 1;
            break;
          }
        }
      }
      if (parsed && t->remaining == 0) {
        if (t->state == SKIP_DATA) {
          if (payload != NULL) payload(t->ctx, chunk, pos, pos, 0, t->frame_start);
          end_data_frame(t, pos);
        } else if (end_control_frame(t, pos) != 0) {
          return t->close_code;
        }
      }
    } else if (s == GET_CONTROL) {
      int n = t->ctl_len;
      int64_t take = t->remaining < len - pos ? t->remaining : len - pos;
      int64_t end = pos + take;
      t->remaining -= take;
      while (pos < end) {
        t->ctl[n] = chunk[pos++] ^ t->ctl_mask[n & 3];
        n++;
      }
      t->ctl_len = n;
      if (t->remaining == 0 && end_control_frame(t, pos) != 0) return t->close_code;
    } else {
      break;  // CLOSED: what follows the Close frame is ignored
    }
  }
  t->frame_start -= len;
  return 0;
}

int64_t tracker_open_bytes(const tracker_t* t) {
  return (t->state == GET_HEADER && t->hdr_len != 0) || t->state == GET_CONTROL ? -t->frame_start : 0;
}

int64_t tracker_bytes_to_boundary(const tracker_t* t) {
  if (t->state == SKIP_DATA || t->state == GET_CONTROL) return t->remaining;
  if (t->state == GET_HEADER) return t->hdr_len == 0 ? 0 : -1;
  return t->state == CLOSED ? 0 : -1;
}

int tracker_at_frame_boundary(const tracker_t* t) { return (t->state == GET_HEADER && t->hdr_len == 0) || t->state == CLOSED; }
