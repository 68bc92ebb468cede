// The inspect core's frame tracker and UTF-8 check (frame-tracker.c).
#ifndef WSGATE_FRAME_TRACKER_H
#define WSGATE_FRAME_TRACKER_H

#include <stddef.h>
#include <stdint.h>

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BIN = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xa };

/** A streaming UTF-8 check (all zeros: at the start of a message). */
typedef struct utf8 {
  uint8_t need, lo, hi, poisoned;
} utf8_t;

/** Feeds p[0, n), masked with `key`, `phase` being p[0]'s offset in its frame's payload. 0: not UTF-8. */
int utf8_write(utf8_t* u, const uint8_t* p, size_t n, const uint8_t key[4], int64_t phase);
/** The message ended: 0 if a character was left unfinished. Ready for the next message. */
int utf8_end(utf8_t* u);
/** p[0, n) is UTF-8, whole. */
int utf8_valid(const uint8_t* p, size_t n);

/**
 * What the tracker reports, as frame-parser.ts's FrameEvents, PayloadSink
 * and MessageGate (`payload` and `message_start` may be NULL: none).
 * Offsets are the chunk's being scanned; frame_start is negative when the
 * frame began in an earlier chunk.
 */
typedef struct tracker_events {
  void (*control)(void* ctx, int opcode, const uint8_t* payload, int n, int64_t frame_start, int64_t frame_end);
  void (*payload)(void* ctx, const uint8_t* chunk, int64_t start, int64_t end, int64_t phase, int64_t frame_start);
  void (*message_start)(void* ctx, int64_t frame_start);
  void (*message)(void* ctx, int opcode, int64_t bytes);
} tracker_events_t;

typedef struct tracker {
  // Options.
  int from_client;      // every frame must be masked (else none may be)
  int rsv1_allowed;     // permessage-deflate was negotiated
  int64_t max_message;  // 0: unlimited
  const tracker_events_t* ev;
  void* ctx;
  // State (frame-parser.ts's fields).
  int state;
  int hdr_len, hdr_need;
  uint8_t hdr[14];
  uint8_t ctl_mask[4];
  uint8_t data_mask[4];  // with a payload sink: the current data frame's key
  uint8_t* ctl;  // a control frame's payload (up to 125 bytes): allocated by the first one
  int ctl_len;
  int opcode, fin;
  int64_t remaining;
  int64_t frame_start;
  int64_t frame_len;  // with a payload sink: the current data frame's length
  int msg_opcode, msg_rsv1;
  int64_t msg_bytes;
  int64_t last_boundary;
  int close_code;
  const char* err;  // the errorCode, once failed
  char* err_text;  // allocated when it fails (NULL if that allocation failed)
} tracker_t;

void tracker_init(tracker_t* t, int from_client, int rsv1_allowed, int64_t max_message, const tracker_events_t* ev, void* ctx);
/** 0, or the close code to fail the connection with (then err and err_text say why). */
int tracker_scan(tracker_t* t, const uint8_t* chunk, int64_t len);
/** Frees what the tracker allocated; it is not used again. */
void tracker_release(tracker_t* t);
/** Bytes at the end of what was scanned that belong to an unfinished header or control frame (at most 131). */
int64_t tracker_open_bytes(const tracker_t* t);
/** Where the next chunk will first be between frames; -1 when unknown. */
int64_t tracker_bytes_to_boundary(const tracker_t* t);
/** No partial frame is outstanding. */
int tracker_at_frame_boundary(const tracker_t* t);

#endif
