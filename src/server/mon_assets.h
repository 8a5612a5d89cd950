/* The console's files, embedded at build time: console_assets.c is
 * generated from src/server/console/ by cmake/embed.cmake. */
#ifndef SQ_SERVER_MON_ASSETS_H
#define SQ_SERVER_MON_ASSETS_H

#include <stddef.h>

typedef struct sq_console_asset {
    const char *name;
    const unsigned char *data;
    size_t len;
} sq_console_asset;
extern const sq_console_asset sq__console_assets[];
extern const size_t sq__console_nassets;

#endif
