// Upstream connections dialled by the module (dial.c), for sessions a relay
// core will carry: the descriptor is in the module's watch set from its
// socket() to its close, and moves into the core's session with the 101.
#ifndef WSGATE_DIAL_H
#define WSGATE_DIAL_H

#include <node_api.h>

#include "conn.h"
#include "watch.h"

typedef struct dial dial_t;

// Adds `dial`, `dialRelease`, `dialClose` and `setDialEvents` to the exports.
void wsgate_dial_init(napi_env env, napi_value exports, watch_home_t* home);

// The dial `v` stands for when it is one that answered and is still open,
// else NULL (no exception: the caller takes `v` as a descriptor instead).
dial_t* dial_of(watch_home_t* home, napi_env env, napi_value v);
// A new core session's two connections, watched with `cb`: w[0] a
// duplicate of the client's descriptor fds[0], or when `accepted`, that
// connection as it is (conn.c); w[1] a duplicate of fds[1], or when
// `dialed`, that dial's connection as it is. Connections are taken last, so
// that a failure leaves them whole. 0, or an errno with nothing taken. The
// descriptors are then w[i]->fd.
int dial_session(watch_home_t* home, const int fds[2], conn_t* accepted, dial_t* dialed, watch_t* w[2], watch_cb cb);

#endif
