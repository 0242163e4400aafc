/* reco — GET /v1/recommendations: who may ask, and for whom.
 *
 * An admin key may ask for anyone. A write key sits in web pages, so it may only ask for the
 * visitor holding it: for an anonymous id (a random id the browser made: knowing it is being that
 * browser), or for a user id the shop's server signed — signature = hex(HMAC-SHA256(signing_secret,
 * user_id)), rendered into the page at login — so one customer cannot read another's
 * recommendations by changing the id. The engine does the rest (eng_recommend). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "c360/engine.h"
#include "http/http.h"

static const char *const known[] = {"profile",       "user_id",   "anonymous_id",
                                    "product_id",    "context",   "strategy",
                                    "limit",         "filter",    "boost",
                                    "exclude",       "market",    "max_per_category",
                                    "max_per_brand", "signature", NULL};

int http_sign_user(const char *secret, const char *user_id, char hex[HTTP_SIGNATURE_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)user_id,
              strlen(user_id), mac, &len) ||
        len * 2 != HTTP_SIGNATURE_LEN)
        return -1;
    for (unsigned i = 0; i < len; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[HTTP_SIGNATURE_LEN] = '\0';
    return 0;
}

/* Whether sig is user_id's signature (hex, either case); compared in constant time. */
static bool signature_ok(const char *secret, const char *user_id, const char *sig) {
    char want[HTTP_SIGNATURE_LEN + 1], got[HTTP_SIGNATURE_LEN];
    if (strlen(sig) != HTTP_SIGNATURE_LEN || http_sign_user(secret, user_id, want)) return false;
    for (size_t i = 0; i < HTTP_SIGNATURE_LEN; i++)
        got[i] = (char)(sig[i] >= 'A' && sig[i] <= 'F' ? sig[i] + 32 : sig[i]);
    return CRYPTO_memcmp(want, got, HTTP_SIGNATURE_LEN) == 0;
}

/* A write key's request must be about the visitor holding it. 0, or replies and returns -1. */
static int check_visitor(http_req *r, const json_t *args) {
    const char *user = json_string_value(json_object_get(args, "user_id"));
    const char *sig = json_string_value(json_object_get(args, "signature"));
    const char *secret = http_cfg(r)->signing_secret;
    if (json_object_get(args, "profile")) {
        http_reply_error(r, "forbidden", "profile",
                         "a write key may not name a profile: use anonymous_id, or user_id with "
                         "its signature");
        return -1;
    }
    if (!user) return 0;
    if (!*secret) {
        http_reply_error(r, "forbidden", "user_id",
                         "recommendations for a user id need an admin key, or a signature made "
                         "with the server's signing_secret, which is not set");
        return -1;
    }
    if (!sig) {
        http_reply_error(
            r, "forbidden", "signature",
            "a write key must sign user_id: signature = hex HMAC-SHA256 of the user id "
            "with the signing secret");
        return -1;
    }
    if (!signature_ok(secret, user, sig)) {
        http_reply_error(r, "forbidden", "signature", "the signature does not match user_id");
        return -1;
    }
    return 0;
}

void reco_handler(http_req *r) {
    json_t *args = json_object();
    if (!args) {
        http_reply_error(r, "internal", NULL, "out of memory");
        return;
    }
    /* A write route's key may come in a body; a GET has none, so no header means no key. */
    if (!r->auth_key && http_authorize(r, NULL, 0)) goto out;
    if (http_query_args(r, known, true, args)) goto out;
    /* The route lets write keys in; the key was checked already, so its scope is a lookup. */
    bool admin = keys_scope_of(http_keys(r), r->key_id) == KEY_ADMIN;
    if (!admin && check_visitor(r, args)) goto out;
    json_object_del(args, "signature");
    eng_error err;
    buf b = BUF_INIT(0);
    if (eng_recommend(http_engine(r), args, r->received_ms, &b, &err) < 0) {
        buf_free(&b);
        http_reply_error_status(r, err.status ? err.status : 500, &err.ev);
        goto out;
    }
    http_reply_json(r, 200, &b);
out:
    json_decref(args);
}
