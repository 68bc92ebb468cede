// Upstream connections dialled by the module (dial.c), for sessions a relay
// core will carry: the descriptor is in the module's watch set from its
// socket() to its close, and moves into the core's session with the 101.
#ifndef WSGATE_DIAL_H
#define WSGATE_DIAL_H

#include <node_api.h>

#include "watch.h"

typedef struct dial dial_t;

// Adds `dial`, `dialRelease`, `dialClose` and `setDialEvents` to the exports.
void wsgate_dial_init(napi_env env, napi_value exports, watch_home_t* home);

// The dial `v` stands for when it is one that answered and is still open,
// else NULL (no exception: the caller takes `v` as a descriptor instead).
dial_t* dial_of(napi_env env, napi_value v);
// A core's session takes the dial's connection: its descriptor (returned)
// and its place in the watch set, into `into`. The dial is done.
int dial_hand_over(dial_t* d, watch_t* into, watch_cb cb);

#endif
