#ifndef COPENSSLCRYPTO_SHIM_H
#define COPENSSLCRYPTO_SHIM_H
/*
 * OpenSSL's libcrypto for SigV4 request signing (SHA-256, HMAC-SHA256) and the MD5 that S3
 * uses for ETags and Content-MD5. Only digests are used here: TLS is libcurl's business.
 *
 * Why this shim exists: EVP_MAX_MD_SIZE is a macro; a function keeps buffer sizes typed.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

static inline int copenssl_max_md_size(void) { return EVP_MAX_MD_SIZE; }
#endif
