// The module's connections, dials and acceptors as JavaScript holds them: an
// external carrying the watcher's key (watch_key), not a pointer. A key can
// outlive what it stood for and then finds nothing, so the module frees its
// objects when it is done with them, with no finalizer: a finalizer per
// connection costs a weak global handle, a GC callback and a queued call.
#ifndef WSGATE_KEYED_H
#define WSGATE_KEYED_H

#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>

#include "watch.h"

static inline napi_status keyed_external(napi_env env, const watch_t* w, napi_finalize finalize, void* hint, napi_value* result) {
  return napi_create_external(env, (void*)(uintptr_t)watch_key(w), finalize, hint, result);
}

// The watcher the external `v` stands for, while it does and runs `cb`; else NULL (no exception).
static inline watch_t* keyed_watch(watch_home_t* home, napi_env env, napi_value v, watch_cb cb) {
  napi_valuetype type;
  void* data = NULL;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external) return NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return watch_find(home->set, (uint64_t)(uintptr_t)data, cb);
}

// A keyed object's watcher's closed callback (watch_closed_later): the object, which holds the
// watcher, is freed a turn after it was done, when no callback on the stack can touch it.
static inline void keyed_free(watch_t* w) { free(w->data); }

#endif
