#ifndef COPENSSLCRYPTO_SHIM_H
#define COPENSSLCRYPTO_SHIM_H
/*
 * OpenSSL's libcrypto for SigV4 request signing (SHA-256, HMAC-SHA256), the MD5 that S3
 * uses for ETags and Content-MD5, and AES-256-GCM for encrypted replicas (SealedObject).
 * TLS is libcurl's business.
 *
 * Why this shim exists: EVP_MAX_MD_SIZE is a macro; a function keeps buffer sizes typed. The
 * GCM helpers keep the EVP call sequence (and its many failure points) in one place.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

static inline int copenssl_max_md_size(void) { return EVP_MAX_MD_SIZE; }

/* Sets the AES-256-GCM key of `ctx` once (`encrypt`: 1 to seal, 0 to open); each chunk then only
 * sets its nonce, so the key schedule is not recomputed per chunk. Returns 1 on success. */
static inline int copenssl_gcm_init(EVP_CIPHER_CTX *ctx, const unsigned char *key, int encrypt) {
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1) return 0;
    return EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, encrypt) == 1;
}

/* Seals `len` bytes of `in` into `out` (same length) under the 12-byte `nonce`, authenticating
 * `aad` too; writes the 16-byte tag. Returns 1 on success. */
static inline int copenssl_gcm_seal(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *aad,
                                    int aad_len, const unsigned char *in, int len, unsigned char *out,
                                    unsigned char *tag) {
    int n = 0;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1) return 0;
    if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, aad_len) != 1) return 0;
    if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, len) != 1) return 0;
    if (EVP_CipherFinal_ex(ctx, out + (len > 0 ? n : 0), &n) != 1) return 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

/* Opens what copenssl_gcm_seal sealed. Returns 1 when the tag matches (then `out` holds the
 * plaintext), 0 when authentication fails (wrong key, or changed bytes); `out` must then be
 * thrown away. */
static inline int copenssl_gcm_open(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *aad,
                                    int aad_len, const unsigned char *in, int len, const unsigned char *tag,
                                    unsigned char *out) {
    int n = 0;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0) != 1) return 0;
    if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, aad_len) != 1) return 0;
    if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, len) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) != 1) return 0;
    return EVP_CipherFinal_ex(ctx, out + (len > 0 ? n : 0), &n) == 1;
}
#endif
