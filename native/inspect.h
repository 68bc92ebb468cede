// The inspect-mode core (inspect.c) shares relay.c's module: its functions
// are added to the exports under `inspect`.
#ifndef WSGATE_INSPECT_H
#define WSGATE_INSPECT_H
#include <node_api.h>

#include "watch.h"

napi_value wsgate_inspect_init(napi_env env, napi_value exports, watch_home_t* home);

#endif
