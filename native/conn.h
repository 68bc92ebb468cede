// Client connections accepted by the module (conn.c) on plain listeners:
// the descriptor is in the module's watch set from its accept4() to its
// close, and moves into a core's session with the 101.
#ifndef WSGATE_CONN_H
#define WSGATE_CONN_H

#include <node_api.h>

#include "watch.h"

typedef struct conn conn_t;

// Adds `acceptStart`, `acceptStop`, `setConnEvents` and the `conn*` functions to the exports.
void wsgate_conn_init(napi_env env, napi_value exports, watch_home_t* home);

// The connection `v` stands for when it is one still open, else NULL (no
// exception: the caller takes `v` as a descriptor instead).
conn_t* conn_of(watch_home_t* home, napi_env env, napi_value v);
// `to` takes the connection as it is (its place in the set, what it
// watches), with no system call; `c` is done.
void conn_hand_over(conn_t* c, watch_t* to, watch_cb cb);

#endif
