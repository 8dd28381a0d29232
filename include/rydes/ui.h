/* The operator dashboard's static files (ui/), embedded at build time by tools/embed.py so the
 * binary serves GET /ui with no files beside it and no CDN behind it. */
#ifndef RYDES_UI_H
#define RYDES_UI_H

#include <stddef.h>

struct ui_asset {
    const char *name;         /* the file name: served as /ui/NAME */
    const char *content_type; /* from the extension */
    const char *etag;         /* a quoted strong validator: a hash of the bytes */
    const char *bytes;
    size_t len;
};

/* Sorted by name. */
extern const struct ui_asset rydes_ui_assets[];
extern const size_t rydes_ui_assets_count;

#endif
