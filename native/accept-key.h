#ifndef WSGATE_ACCEPT_KEY_H
#define WSGATE_ACCEPT_KEY_H

#include <node_api.h>

// acceptKey(key): the Sec-WebSocket-Accept for a Sec-WebSocket-Key.
void wsgate_accept_key_init(napi_env env, napi_value exports);

#endif
