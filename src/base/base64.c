/* base64 (sq_base/base64.h). */
#include "sq_base/base64.h"

#include <stdint.h>
#include <stdlib.h>

static const char std_abc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_abc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *sq__b64_encode(const void *p, size_t n, bool url)
{
    const unsigned char *in = p;
    const char *abc = url ? url_abc : std_abc;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        if (i + 1 < n)
            *o++ = abc[(v >> 6) & 63];
        else if (!url)
            *o++ = '=';
        if (!url)
            *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int value_of(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

void *sq__b64_decode(const char *s, size_t len, bool url, size_t *out_len)
{
    size_t pad = 0;
    while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
        pad++;
    if (!url && (len % 4 != 0))
        return NULL;
    size_t body = len - pad;
    if (url && pad && (len % 4 != 0))
        return NULL;
    if (body % 4 == 1)
        return NULL;
    if (!url && pad != (body % 4 ? 4 - body % 4 : 0))
        return NULL;
    unsigned char *out = malloc(body / 4 * 3 + 3), *o = out;
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < body; i++) {
        int v = value_of(s[i], url);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) { /* leftover bits must be zero: one encoding per value */
        free(out);
        return NULL;
    }
    *o = '\0';
    if (out_len)
        *out_len = (size_t)(o - out);
    return out;
}
