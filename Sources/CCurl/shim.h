#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H
/*
 * libcurl for the S3 client (Sources/VFSReplication/S3).
 *
 * Why this shim exists: curl_easy_setopt and curl_easy_getinfo are variadic, and Swift cannot
 * call variadic C functions. Each wrapper below fixes the type of the third argument, so a
 * Swift caller can only pass what libcurl expects for that family of options (long, curl_off_t,
 * string, pointer, callback). Keep this header to curl only: it is imported next to Glibc.
 */
#include <curl/curl.h>

/* Callback types, spelled out so that Swift sees `@convention(c)` closures with nullability. */
typedef size_t (*ccurl_data_callback)(char *_Nullable data, size_t size, size_t count, void *_Nullable context);
typedef int (*ccurl_seek_callback)(void *_Nullable context, curl_off_t offset, int origin);

static inline CURLcode ccurl_setopt_long(CURL *_Nonnull handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_setopt_off(CURL *_Nonnull handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

/* libcurl copies string options (since 7.17.0), so the Swift string may go away afterwards. */
static inline CURLcode ccurl_setopt_string(CURL *_Nonnull handle, CURLoption option, const char *_Nullable value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_setopt_pointer(CURL *_Nonnull handle, CURLoption option, void *_Nullable value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_setopt_slist(CURL *_Nonnull handle, CURLoption option,
                                          struct curl_slist *_Nullable list) {
    return curl_easy_setopt(handle, option, list);
}

/* CURLOPT_WRITEFUNCTION, CURLOPT_READFUNCTION, CURLOPT_HEADERFUNCTION. */
static inline CURLcode ccurl_setopt_data_callback(CURL *_Nonnull handle, CURLoption option,
                                                  ccurl_data_callback _Nullable callback) {
    return curl_easy_setopt(handle, option, callback);
}

/* CURLOPT_SEEKFUNCTION: lets libcurl rewind an upload it must resend on a fresh connection. */
static inline CURLcode ccurl_setopt_seek_callback(CURL *_Nonnull handle, ccurl_seek_callback _Nullable callback) {
    return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, callback);
}

static inline CURLcode ccurl_getinfo_long(CURL *_Nonnull handle, CURLINFO info, long *_Nonnull value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode ccurl_getinfo_off(CURL *_Nonnull handle, CURLINFO info, curl_off_t *_Nonnull value) {
    return curl_easy_getinfo(handle, info, value);
}

/* Return values that are macros (not importable, or not with the type Swift needs). */
static inline size_t ccurl_readfunc_abort(void) { return CURL_READFUNC_ABORT; }
static inline size_t ccurl_writefunc_error(void) { return CURL_WRITEFUNC_ERROR; }
static inline long ccurl_global_all(void) { return CURL_GLOBAL_ALL; }
#endif
