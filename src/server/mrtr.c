/* requestState (srv.h): the state a handler hands back across the rounds
 * of a multi-round request, kept by the client and returned with its
 * answers.  The client cannot be trusted with it, so it is signed:
 *
 *   "v1." base64url(JSON {s: state, m: method, n: name, e: expiry}) "."
 *   base64url(HMAC-SHA256(key, everything before the last dot))
 *
 * The signature covers the version prefix; the payload binds the state to
 * the method and the tool, prompt or URI it was made for, so it cannot be
 * replayed on another request, and it expires (state_ttl).  Any instance
 * that shares the key (state_key in the configuration) can continue a
 * request another one started.  It is signed, not encrypted: handlers
 * must not put secrets in their state.  Checks run MAC first, in constant
 * time; a state that fails any check is refused with one opaque error. */
#include "srv.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq_base/base64.h"

static bool mac(sq_srv *s, const char *text, size_t len,
                unsigned char out[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), s->hmac_key, sizeof s->hmac_key,
                (const unsigned char *)text, len, out, &n) && n == 32;
}

static int64_t wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

char *sq_mrtr_seal(sq_srv *s, const char *method, const char *name,
                   json_t *state)
{
    int64_t ttl = s->cfg.state_ttl > 0 ? s->cfg.state_ttl / SQ_SEC : 600;
    json_t *p = json_pack("{s:O,s:s,s:s,s:I}", "s", state ? state : json_null(),
                          "m", method, "n", name ? name : "", "e",
                          (json_int_t)(wall_seconds() + ttl));
    char *js = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    char *body = js ? sq__b64_encode(js, strlen(js), true) : NULL;
    free(js);
    if (!body)
        return NULL;
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__strbuf_printf(&b, "v1.%s", body);
    free(body);
    unsigned char m[32];
    char *sig = NULL;
    if (!b.failed && mac(s, b.buf, b.len, m))
        sig = sq__b64_encode(m, sizeof m, true);
    if (!sig) {
        sq__strbuf_free(&b);
        return NULL;
    }
    sq__strbuf_printf(&b, ".%s", sig);
    free(sig);
    return sq__strbuf_take(&b);
}

int sq_mrtr_open(sq_srv *s, const char *method, const char *name,
                 const char *sealed, json_t **state)
{
    *state = NULL;
    if (!sealed || strncmp(sealed, "v1.", 3) != 0)
        return -EINVAL;
    const char *dot = strrchr(sealed, '.');
    if (dot == sealed + 2)
        return -EINVAL;
    size_t siglen;
    unsigned char *sig = sq__b64_decode(dot + 1, strlen(dot + 1), true, &siglen);
    unsigned char want[32];
    bool ok = sig && siglen == 32 &&
              mac(s, sealed, (size_t)(dot - sealed), want) &&
              CRYPTO_memcmp(sig, want, 32) == 0;
    free(sig);
    if (!ok)
        return -EINVAL;
    size_t n;
    char *js = sq__b64_decode(sealed + 3, (size_t)(dot - sealed - 3), true, &n);
    json_t *p = js ? json_loadb(js, n, 0, NULL) : NULL;
    free(js);
    json_t *m = json_object_get(p, "m"), *nm = json_object_get(p, "n"),
           *e = json_object_get(p, "e");
    ok = json_is_string(m) && json_is_string(nm) && json_is_integer(e) &&
         strcmp(json_string_value(m), method) == 0 &&
         strcmp(json_string_value(nm), name ? name : "") == 0 &&
         json_integer_value(e) >= wall_seconds();
    if (ok)
        *state = json_incref(json_object_get(p, "s"));
    json_decref(p);
    return ok ? 0 : -EINVAL;
}
