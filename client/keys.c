/* Chained prefix keys and hex helpers (docs/KEYS.md). */
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

#include "vkv/vkv.h"

/* Writes v as 4 little-endian bytes. */
static void le32(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

int vkv_key_chain(const vkv_key *parent, const uint32_t *tokens, size_t ntokens,
                  const vkv_image_ref *images, size_t nimages, vkv_key *out)
{
    static const char tag[] = "vkv-chain-v1";
    static const uint8_t zero[32];
    uint8_t b4[4];
    if (!out || (ntokens && !tokens) || (nimages && !images) || ntokens > UINT32_MAX ||
        nimages > UINT32_MAX)
        return VKV_EINVAL;
    for (size_t i = 0; i < nimages; i++) {
        if ((uint64_t)images[i].offset + images[i].length > ntokens)
            return VKV_EINVAL;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return VKV_ENOMEM;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    ok = ok && EVP_DigestUpdate(ctx, tag, sizeof tag - 1);
    ok = ok && EVP_DigestUpdate(ctx, parent ? parent->b : zero, 32);
    le32(b4, (uint32_t)ntokens);
    ok = ok && EVP_DigestUpdate(ctx, b4, 4);
    for (size_t i = 0; ok && i < ntokens; i++) {
        le32(b4, tokens[i]);
        ok = EVP_DigestUpdate(ctx, b4, 4);
    }
    le32(b4, (uint32_t)nimages);
    ok = ok && EVP_DigestUpdate(ctx, b4, 4);
    for (size_t i = 0; ok && i < nimages; i++) {
        ok = EVP_DigestUpdate(ctx, images[i].hash, 32);
        le32(b4, images[i].offset);
        ok = ok && EVP_DigestUpdate(ctx, b4, 4);
        le32(b4, images[i].length);
        ok = ok && EVP_DigestUpdate(ctx, b4, 4);
    }
    unsigned int len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, out->b, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? VKV_OK : VKV_ESYS;
}

void vkv_key_hex(const vkv_key *key, char hex[65])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = d[key->b[i] >> 4];
        hex[2 * i + 1] = d[key->b[i] & 15];
    }
    hex[64] = '\0';
}

/* Stores the value of hex digit c in *v; false when c is not one. */
static bool hexval(char c, int *v)
{
    if (c >= '0' && c <= '9')
        *v = c - '0';
    else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10;
    else
        return false;
    return true;
}

int vkv_key_parse(const char *hex, vkv_key *key)
{
    vkv_key k;
    if (!hex || strlen(hex) != 64)
        return VKV_EINVAL;
    for (int i = 0; i < 32; i++) {
        int hi, lo;
        if (!hexval(hex[2 * i], &hi) || !hexval(hex[2 * i + 1], &lo))
            return VKV_EINVAL;
        k.b[i] = (uint8_t)(hi << 4 | lo);
    }
    *key = k;
    return VKV_OK;
}
