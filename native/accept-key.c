// The Sec-WebSocket-Accept that answers a Sec-WebSocket-Key (RFC 6455
// §4.2.2): base64(SHA-1(key + GUID)), with the OpenSSL Node carries. Every
// handshake computes one (the upstream's 101 must carry it); through
// crypto.hash() that is a method fetch, an EVP context and the strings'
// conversions around 2 SHA-1 blocks, about 5k instructions, a third of it
// the hashing. Here it is the hashing and two string conversions.
//
// SHA1_Init and friends are deprecated in OpenSSL 3 for EVP, whose fetch
// per call is the cost avoided here; Node exports them to addons.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "accept-key.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum { GUID_LEN = sizeof GUID - 1, KEY_MAX = 64 };

// acceptKey(key): the accept as a string; undefined for a key over KEY_MAX
// bytes of UTF-8 (the caller hashes those itself: no real key is).
static napi_value accept_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  char buf[KEY_MAX + 5 + GUID_LEN];
  size_t len = 0;
  // As crypto.hash() hashes a string: its UTF-8. Room for one more
  // character of up to 4 bytes: a longer key is written past KEY_MAX.
  if (napi_get_value_string_utf8(env, argv[0], buf, KEY_MAX + 5, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "wsgate: acceptKey(key) takes a string");
    return NULL;
  }
  if (len > KEY_MAX) {
    napi_get_undefined(env, &result);
    return result;
  }
  memcpy(buf + len, GUID, GUID_LEN);
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA_CTX ctx;
  SHA1_Init(&ctx);
  SHA1_Update(&ctx, buf, len + GUID_LEN);
  SHA1_Final(md, &ctx);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(out, md, SHA_DIGEST_LENGTH);
  napi_create_string_latin1(env, (const char*)out, (size_t)n, &result);
  return result;
}

void wsgate_accept_key_init(napi_env env, napi_value exports) {
  napi_property_descriptor prop = {"acceptKey", NULL, accept_key, NULL, NULL, NULL, napi_enumerable, NULL};
  napi_define_properties(env, exports, 1, &prop);
}
