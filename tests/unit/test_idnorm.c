/* Unit tests for c360/idnorm: the type table, every normaliser over a table of real-world inputs
 * (phone numbers as people in a dozen countries write them, emails, ids, handles), the junk
 * rules, the length boundaries, and the extraction of identifiers from events. Every normalised
 * value is normalised again and must come back unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c360/idnorm.h"

#define JUNK IDN_JUNK
#define BAD (-1)

typedef struct ncase {
    int type;
    const char *country; /* default country, or NULL */
    const char *in;
    int rc;
    const char *out; /* the value for rc 0; a word the message must contain otherwise */
} ncase;

/* clang-format off */
static const ncase cases[] = {
    /* Germany: trunk 0, "(0)" after +49, 00 prefix, '/' separator, lost '+', lost 0. */
    {IDN_PHONE, "DE", "030 901820",              0, "+4930901820"},
    {IDN_PHONE, "DE", "+49 (0)30 901820",        0, "+4930901820"},
    {IDN_PHONE, "DE", "0049 171 3859246",        0, "+491713859246"},
    {IDN_PHONE, "DE", "0171/3859246",            0, "+491713859246"},
    {IDN_PHONE, "DE", "+49 0171 3859246",        0, "+491713859246"},
    {IDN_PHONE, "DE", "4917138592461",           0, "+4917138592461"},
    {IDN_PHONE, "DE", "17138592461",             0, "+4917138592461"},
    /* United States: trunk 1 is also the country code; 011 is the exit code. */
    {IDN_PHONE, "US", "(212) 736-5000",          0, "+12127365000"},
    {IDN_PHONE, "US", "1-212-736-5000",          0, "+12127365000"},
    {IDN_PHONE, "us", "+1 212.736.5000",         0, "+12127365000"},
    {IDN_PHONE, "US", "011 44 20 7946 0958",     0, "+442079460958"},
    /* United Kingdom. */
    {IDN_PHONE, "GB", "+44 (0)20 7946 0958",     0, "+442079460958"},
    {IDN_PHONE, "GB", "07700 900461",            0, "+447700900461"},
    {IDN_PHONE, NULL, "+44 7700 900461",         0, "+447700900461"},
    /* France. */
    {IDN_PHONE, "FR", "06 12 34 56 78",          0, "+33612345678"},
    {IDN_PHONE, "FR", "+33 (0)1 42 68 53 00",    0, "+33142685300"},
    /* Italy keeps the 0 of landlines, even written "(0)"; 393... is a national mobile. */
    {IDN_PHONE, "IT", "06 6988 4857",            0, "+390669884857"},
    {IDN_PHONE, "IT", "+39 (0)6 6988 4857",      0, "+390669884857"},
    {IDN_PHONE, "IT", "+39 347 216 9036",        0, "+393472169036"},
    {IDN_PHONE, "IT", "393 472 1690",            0, "+393934721690"},
    /* Spain, Netherlands, Switzerland (tel: URI), Austria, Poland, Sweden. */
    {IDN_PHONE, "ES", "915 23 87 42",            0, "+34915238742"},
    {IDN_PHONE, "NL", "06-38472916",             0, "+31638472916"},
    {IDN_PHONE, "CH", "tel:+41-44-668-18-00",    0, "+41446681800"},
    {IDN_PHONE, "AT", "0664 1234567",            0, "+436641234567"},
    {IDN_PHONE, "PL", "+48 512 384 729",         0, "+48512384729"},
    {IDN_PHONE, "SE", "070-384 72 91",           0, "+46703847291"},
    /* Japan (exit 010), Australia (exit 0011), Russia (trunk 8, exit 810), Hungary (trunk 06). */
    {IDN_PHONE, "JP", "090-3847-2916",           0, "+819038472916"},
    {IDN_PHONE, "JP", "010 49 30 901820",        0, "+4930901820"},
    {IDN_PHONE, "AU", "0412 385 729",            0, "+61412385729"},
    {IDN_PHONE, "AU", "0011 44 20 7946 0958",    0, "+442079460958"},
    {IDN_PHONE, "RU", "8 (912) 384-72-91",       0, "+79123847291"},
    {IDN_PHONE, "RU", "810 49 30 901820",        0, "+4930901820"},
    {IDN_PHONE, "HU", "06 30 384 7291",          0, "+36303847291"},
    /* Brazil, India, Mexico (the old mobile 1 is kept). */
    {IDN_PHONE, "BR", "(11) 93847-2916",         0, "+5511938472916"},
    {IDN_PHONE, "IN", "098 4738 2916",           0, "+919847382916"},
    {IDN_PHONE, "MX", "+52 1 55 3847 2916",      0, "+5215538472916"},
    /* Boundaries: 15 digits is E.164's most, 16 too many; 7 the fewest. */
    {IDN_PHONE, NULL, "+998 90 123 4789",        0, "+998901234789"},
    {IDN_PHONE, NULL, "+683 4002",               0, "+6834002"},
    {IDN_PHONE, NULL, "+683 400",                BAD, "E.164"},
    {IDN_PHONE, NULL, "+998 90 123 4789 1234",   BAD, "E.164"},
    {IDN_PHONE, NULL, "+881 6 3847 2916 384",    0, "+881638472916384"},
    /* Invalid. */
    {IDN_PHONE, NULL, "0171 3859246",            BAD, "no default country"},
    {IDN_PHONE, "XX", "0171 3859246",            BAD, "default country"},
    {IDN_PHONE, "DE", "+49 171",                 BAD, "E.164"},
    {IDN_PHONE, "FR", "+33 6 12 34",             BAD, "FR numbers have 9 to 9"},
    {IDN_PHONE, "DE", "+49 0 0171 3859246",      BAD, "more than one 0"},
    {IDN_PHONE, "US", "+1 212 736 5000 ext 12",  BAD, "not a digit"},
    {IDN_PHONE, "US", "++1 212 736 5000",        BAD, "+"},
    {IDN_PHONE, "US", "212+736",                 BAD, "+"},
    {IDN_PHONE, "DE", "+0 171 3859246",          BAD, "country code"},
    {IDN_PHONE, "DE", "()-.",                    BAD, "no digits"},
    {IDN_PHONE, "DE", "1234567890123456789012345678901234", BAD, "too many digits"},
    /* Junk. */
    {IDN_PHONE, NULL, "+1234567890",             JUNK, "consecutive"},
    {IDN_PHONE, "US", "555-555-5555",            JUNK, "every digit"},
    {IDN_PHONE, "US", "(415) 555-0123",          JUNK, "555-01XX"},
    {IDN_PHONE, "DE", "0123456789",              JUNK, "consecutive"},
    {IDN_PHONE, "DE", "+49 987654321",           JUNK, "consecutive"},
    {IDN_PHONE, "US", "+1 000 000 0000",         JUNK, "every digit"},
    {IDN_PHONE, "DE", " N/A ",                   JUNK, "n/a"},
    {IDN_PHONE, "DE", "0",                       JUNK, "placeholder"},
    /* WhatsApp: a bare wa_id is international; a leading 0 is national. */
    {IDN_WHATSAPP, NULL, "16505551234",          0, "+16505551234"},
    {IDN_WHATSAPP, NULL, "4917138592461",        0, "+4917138592461"},
    {IDN_WHATSAPP, "DE", "0171 3859246",         0, "+491713859246"},
    {IDN_WHATSAPP, "DE", "+4917138592461",       0, "+4917138592461"},
    {IDN_WHATSAPP, NULL, "0171 3859246",         BAD, "no default country"},

    /* Email: trimmed and lower-cased, +tags and dots kept. */
    {IDN_EMAIL, NULL, "  Ada.Lovelace@Example.ORG \t", 0, "ada.lovelace@example.org"},
    {IDN_EMAIL, NULL, "JANE+shop@GMail.com",     0, "jane+shop@gmail.com"},
    {IDN_EMAIL, NULL, "j.a.n.e@gmail.com",       0, "j.a.n.e@gmail.com"},
    {IDN_EMAIL, NULL, "o'brien@shop.ie",         0, "o'brien@shop.ie"},
    {IDN_EMAIL, NULL, "ada@xn--mller-kva.de",    0, "ada@xn--mller-kva.de"},
    {IDN_EMAIL, NULL, "root@mailhost",           0, "root@mailhost"},
    {IDN_EMAIL, NULL, "TEST@Test.Com ",          JUNK, "test@test.com"},
    {IDN_EMAIL, NULL, "a@a.com",                 JUNK, "placeholder address"},
    {IDN_EMAIL, NULL, "No-Reply@shop.de",        JUNK, "never a customer"},
    {IDN_EMAIL, NULL, "someone@test.com",        JUNK, "placeholder domain"},
    {IDN_EMAIL, NULL, "ada@shop.example",        JUNK, "reserved for testing"},
    {IDN_EMAIL, NULL, "ada@foo.invalid",         JUNK, "reserved for testing"},
    {IDN_EMAIL, NULL, "undefined",               JUNK, "undefined"},
    {IDN_EMAIL, NULL, "no-at-sign",              BAD, "no @"},
    {IDN_EMAIL, NULL, "a@b@shop.de",             BAD, "more than one @"},
    {IDN_EMAIL, NULL, "@shop.de",                BAD, "nothing before"},
    {IDN_EMAIL, NULL, "ada@",                    BAD, "no domain"},
    {IDN_EMAIL, NULL, ".ada@shop.de",            BAD, "misplaced dot"},
    {IDN_EMAIL, NULL, "ada.@shop.de",            BAD, "misplaced dot"},
    {IDN_EMAIL, NULL, "a..b@shop.de",            BAD, "misplaced dot"},
    {IDN_EMAIL, NULL, "ada lovelace@shop.de",    BAD, "space"},
    {IDN_EMAIL, NULL, "ada@-shop.de",            BAD, "starting with a hyphen"},
    {IDN_EMAIL, NULL, "ada@shop-.de",            BAD, "ending with a hyphen"},
    {IDN_EMAIL, NULL, "ada@shop..de",            BAD, "empty label"},
    {IDN_EMAIL, NULL, "ada@shop.de.",            BAD, "empty label"},
    {IDN_EMAIL, NULL, "ada@[192.0.2.1]",         BAD, "not allowed in a domain"},
    {IDN_EMAIL, NULL, "ada@192.0.2.1",           BAD, "IP address"},
    {IDN_EMAIL, NULL, "\"ada\"@shop.de",         BAD, "not allowed before"},
    {IDN_EMAIL, NULL, "ada@m\xc3\xbcller.de",    BAD, "not allowed in a domain"},
    {IDN_EMAIL, NULL, "ada@shop_x.de",           BAD, "not allowed in a domain"},

    /* Ids are exact strings: never trimmed, only junk and size refused. */
    {IDN_USER_ID, NULL, " 42 ",                  0, " 42 "},
    {IDN_USER_ID, NULL, "u-1F",                  0, "u-1F"},
    {IDN_USER_ID, NULL, "NULL",                  JUNK, "null"},
    {IDN_USER_ID, NULL, " None ",                JUNK, "none"},
    {IDN_USER_ID, NULL, "[object Object]",       JUNK, "[object object]"},
    {IDN_USER_ID, NULL, "-1",                    JUNK, "-1"},
    {IDN_USER_ID, NULL, "1",                     JUNK, "placeholder"},
    {IDN_USER_ID, NULL, "Guest",                 JUNK, "guest"},
    {IDN_USER_ID, NULL, "",                      JUNK, "(empty)"},
    {IDN_USER_ID, NULL, "   ",                   JUNK, "(empty)"},
    {IDN_ANONYMOUS_ID, NULL, "00000000-0000-0000-0000-000000000000", JUNK, "placeholder"},
    {IDN_ANONYMOUS_ID, NULL, "3f1c2e8a-5b7d-4c1e-9a2f-6d8b0e4c7a19", 0,
     "3f1c2e8a-5b7d-4c1e-9a2f-6d8b0e4c7a19"},
    {IDN_ANONYMOUS_ID, NULL, "NaN",              JUNK, "nan"},

    /* Handles, Messenger ids, external ids. */
    {IDN_INSTAGRAM, NULL, " @Jane.Doe ",         0, "jane.doe"},
    {IDN_X, NULL, "JaneDoe_",                    0, "janedoe_"},
    {IDN_TIKTOK, NULL, "@@jane",                 BAD, "letters, digits"},
    {IDN_TELEGRAM, NULL, "jane doe",             BAD, "letters, digits"},
    {IDN_INSTAGRAM, NULL, "@null",               JUNK, "null"},
    {IDN_MESSENGER, NULL, " 1254459154682919 ",  0, "1254459154682919"},
    {IDN_MESSENGER, NULL, "12a",                 BAD, "digits only"},
    {IDN_MESSENGER, NULL, "123456789012345678901234567890123", BAD, "32 digits"},
    {IDN_EXTERNAL, NULL, "GA_Client_Id:GA1.2.3", 0, "ga_client_id:GA1.2.3"},
    {IDN_EXTERNAL, NULL, "crm:ID 7:a",           0, "crm:ID 7:a"},
    {IDN_EXTERNAL, NULL, "ios.idfa:00000000-0000-0000-0000-000000000000", JUNK, "placeholder"},
    {IDN_EXTERNAL, NULL, "t:",                   JUNK, "(empty)"},
    {IDN_EXTERNAL, NULL, "email:ada@shop.de",    BAD, "its own kind"},
    {IDN_EXTERNAL, NULL, "nocolon",              BAD, "<type>:<id>"},
    {IDN_EXTERNAL, NULL, ":x",                   BAD, "1 to 32"},
    {IDN_EXTERNAL, NULL, "bad type:x",           BAD, "[a-z0-9_.-]"},
};
/* clang-format on */

static const char *type_name(int t) {
    return idn_type_get(t)->name;
}

/* Runs one case: checks the result, then that a normalised value normalises to itself. */
static void run_case(const ncase *c, size_t len) {
    char out[IDN_VALUE_LEN] = "untouched";
    ev_error err = {0};
    int rc = idn_normalize(c->type, c->in, len, out, sizeof out, c->country, &err);
    if (rc != c->rc)
        fail_msg("%s \"%s\" (%s): got %d (%s), want %d", type_name(c->type), c->in,
                 c->country ? c->country : "-", rc, rc == 0 ? out : err.message, c->rc);
    if (rc == 0) {
        if (strcmp(out, c->out) != 0)
            fail_msg("%s \"%s\": got \"%s\", want \"%s\"", type_name(c->type), c->in, out, c->out);
        char again[IDN_VALUE_LEN];
        ev_error e2 = {0};
        int rc2 = idn_normalize(c->type, out, strlen(out), again, sizeof again, c->country, &e2);
        if (rc2 != 0 || strcmp(again, out) != 0)
            fail_msg("%s \"%s\" is not stable: %d %s", type_name(c->type), out, rc2,
                     rc2 == 0 ? again : e2.message);
        return;
    }
    assert_string_equal(out, "untouched"); /* out is only written on success */
    assert_string_equal(err.code, rc == JUNK ? IDN_JUNK_CODE : "invalid_field");
    assert_string_equal(err.field, type_name(c->type));
    if (!strstr(err.message, c->out))
        fail_msg("%s \"%s\": message \"%s\" lacks \"%s\"", type_name(c->type), c->in, err.message,
                 c->out);
}

static void test_table_cases(void **state) {
    (void)state;
    assert_true(sizeof cases / sizeof cases[0] >= 40);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], strlen(cases[i].in));
}

static void test_types(void **state) {
    (void)state;
    assert_int_equal(idn_type_lookup("email"), IDN_EMAIL);
    assert_int_equal(idn_type_lookup("EMAIL"), IDN_EMAIL);
    assert_int_equal(idn_type_lookup("userId"), IDN_USER_ID);
    assert_int_equal(idn_type_lookup("user_id"), IDN_USER_ID);
    assert_int_equal(idn_type_lookup("anonymousId"), IDN_ANONYMOUS_ID);
    assert_int_equal(idn_type_lookup("wa_id"), IDN_WHATSAPP);
    assert_int_equal(idn_type_lookup("twitter"), IDN_X);
    assert_int_equal(idn_type_lookup("psid"), IDN_MESSENGER);
    assert_int_equal(idn_type_lookup("ga_client_id"), -1);
    assert_int_equal(idn_type_lookup("emai"), -1);
    assert_int_equal(idn_type_lookup("emaill"), -1);
    assert_int_equal(idn_type_lookup(""), -1);
    assert_int_equal(idn_type_lookup(NULL), -1);
    assert_null(idn_type_get(-1));
    assert_null(idn_type_get(IDN_NTYPES));
    /* The limits the brief fixes, and the anchor order. */
    assert_int_equal(idn_type_get(IDN_USER_ID)->limit, 1);
    assert_int_equal(idn_type_get(IDN_EMAIL)->limit, 5);
    assert_int_equal(idn_type_get(IDN_PHONE)->limit, 5);
    assert_int_equal(idn_type_get(IDN_ANONYMOUS_ID)->limit, 1000);
    assert_int_equal(idn_type_get(IDN_WHATSAPP)->limit, 10);
    assert_int_equal(idn_type_get(IDN_EXTERNAL)->limit, 10);
    const int order[] = {IDN_USER_ID,   IDN_EMAIL,    IDN_PHONE,       IDN_WHATSAPP,
                         IDN_MESSENGER, IDN_EXTERNAL, IDN_ANONYMOUS_ID};
    for (size_t i = 1; i < sizeof order / sizeof order[0]; i++)
        assert_true(idn_type_get(order[i - 1])->priority < idn_type_get(order[i])->priority);
    for (int t = 0; t < IDN_NTYPES; t++) {
        assert_int_equal(idn_type_lookup(idn_type_get(t)->name), t);
        assert_int_equal(idn_type_get(t)->priority, t);
    }
    assert_string_equal(type_name(IDN_X), "x");
}

static void test_countries(void **state) {
    (void)state;
    static const char *const known[] = {
        "US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "NL", "LU", "IT", "ES", "PT",
        "SE", "NO", "DK", "FI", "PL", "CZ", "HU", "RO", "GR", "TR", "RU", "UA", "IL", "AE",
        "SA", "EG", "ZA", "NG", "KE", "IN", "PK", "BD", "CN", "JP", "KR", "SG", "HK", "ID",
        "PH", "TH", "VN", "MY", "AU", "NZ", "BR", "MX", "AR", "CL", "CO", "PE"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!idn_country_known(known[i])) fail_msg("%s is not known", known[i]);
    assert_true(idn_country_known("de"));
    assert_false(idn_country_known("XX"));
    assert_false(idn_country_known("DEU"));
    assert_false(idn_country_known("D"));
    assert_false(idn_country_known(""));
    assert_false(idn_country_known(NULL));
}

/* Values that are exactly at a limit, and one byte past it. */
static void test_boundaries(void **state) {
    (void)state;
    char in[600], out[IDN_VALUE_LEN];
    ev_error err;
    /* user_id: 255 bytes fine, 256 refused. */
    memset(in, 'u', 256);
    assert_int_equal(idn_normalize(IDN_USER_ID, in, 255, out, sizeof out, NULL, &err), 0);
    assert_int_equal(strlen(out), 255);
    assert_int_equal(idn_normalize(IDN_USER_ID, in, 256, out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.message, "user_id is longer than 255 bytes");
    /* A NUL inside an id. */
    assert_int_equal(idn_normalize(IDN_USER_ID, "a\0b", 3, out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.message, "user_id contains a NUL byte");
    /* email: local part 64 fine, 65 refused. */
    memset(in, 'a', 65);
    strcpy(in + 64, "@shop.de");
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), 0);
    memset(in, 'a', 65);
    strcpy(in + 65, "@shop.de");
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.message, "email has more than 64 bytes before the @");
    /* a domain label of 63 fine, 64 refused. */
    strcpy(in, "a@");
    memset(in + 2, 'd', 63);
    strcpy(in + 65, ".de");
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), 0);
    memset(in + 2, 'd', 64);
    strcpy(in + 66, ".de");
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.message, "email has a domain label longer than 63 bytes");
    /* the whole address: 254 fine, 255 refused (labels of 60 and dots). */
    char *p = in;
    p += sprintf(p, "%s", "ab@");
    for (int i = 0; i < 4; i++) {
        memset(p, 'x', 60);
        p += 60;
        *p++ = '.';
    }
    strcpy(p, "de");
    assert_int_equal(strlen(in), 249);
    strcpy(p, "shop.de"); /* 254 */
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), 0);
    assert_int_equal(strlen(out), 254);
    strcpy(p, "shopx.de"); /* 255 */
    assert_int_equal(idn_normalize(IDN_EMAIL, in, strlen(in), out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.message, "email is longer than 254 bytes");
    /* handles: 64 fine, 65 refused. */
    memset(in, 'h', 65);
    assert_int_equal(idn_normalize(IDN_TIKTOK, in, 64, out, sizeof out, NULL, &err), 0);
    assert_int_equal(idn_normalize(IDN_TIKTOK, in, 65, out, sizeof out, NULL, &err), -1);
    /* external: "type:id" of 255 bytes fine, 256 refused; a 32-byte type fine, 33 refused. */
    memset(in, 't', 32);
    in[32] = ':';
    memset(in + 33, 'i', 300);
    assert_int_equal(idn_normalize(IDN_EXTERNAL, in, 255, out, sizeof out, NULL, &err), 0);
    assert_int_equal(idn_normalize(IDN_EXTERNAL, in, 256, out, sizeof out, NULL, &err), -1);
    memset(in, 't', 33);
    in[33] = ':';
    assert_int_equal(idn_normalize(IDN_EXTERNAL, in, 40, out, sizeof out, NULL, &err), -1);
    /* NULL input is the empty string: junk. */
    assert_int_equal(idn_normalize(IDN_EMAIL, NULL, 0, out, sizeof out, NULL, &err), JUNK);
    /* An unknown type. */
    assert_int_equal(idn_normalize(IDN_NTYPES, "x", 1, out, sizeof out, NULL, &err), -1);
    assert_string_equal(err.code, "internal");
    /* err may be NULL. */
    assert_int_equal(idn_normalize(IDN_EMAIL, "bad", 3, out, sizeof out, NULL, NULL), -1);
}

/* out must hold the value: one byte short fails, exactly enough succeeds. */
static void test_output_buffer(void **state) {
    (void)state;
    char out[14];
    ev_error err;
    assert_int_equal(idn_normalize(IDN_PHONE, "+491713859246", 13, out, 14, NULL, &err), 0);
    assert_string_equal(out, "+491713859246");
    assert_int_equal(idn_normalize(IDN_PHONE, "+491713859246", 13, out, 13, NULL, &err), -1);
    assert_string_equal(err.code, "internal");
}

/* Inputs given by length, not NUL: bytes past len are never read as part of the value. */
static void test_length_not_nul(void **state) {
    (void)state;
    char out[IDN_VALUE_LEN];
    ev_error err;
    assert_int_equal(idn_normalize(IDN_EMAIL, "ada@shop.deXXXX", 11, out, sizeof out, NULL, &err),
                     0);
    assert_string_equal(out, "ada@shop.de");
    assert_int_equal(idn_normalize(IDN_PHONE, "0301234567abc", 10, out, sizeof out, "DE", &err), 0);
    assert_string_equal(out, "+49301234567");
}

/* ---- extraction ---- */

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_ALLOW_NUL, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

static void expect_ids(const idn_list *l, const int *types, const char *const *values, int n) {
    if (l->n != n) {
        for (int i = 0; i < l->n; i++)
            fprintf(stderr, "  %s %s\n", type_name(l->ids[i].type), l->ids[i].value);
        fail_msg("%d identifiers, want %d", l->n, n);
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(l->ids[i].type, types[i]);
        assert_string_equal(l->ids[i].value, values[i]);
    }
}

static void test_extract_identify(void **state) {
    (void)state;
    json_t *ev = parse(
        "{\"type\":\"identify\",\"anonymousId\":\"3f1c2e8a-5b7d\",\"userId\":\"u1\","
        "\"traits\":{\"email\":\" Ada@Shop.DE\",\"phone\":\"0171 3859246\",\"twitter\":\"@Ada\","
        "\"x\":\"ada\",\"name\":\"Ada\"},"
        "\"properties\":{\"email\":\"friend@shop.de\"},"
        "\"context\":{\"traits\":{\"email\":\"ada@shop.de\",\"whatsapp\":\"4917138592461\"},"
        "\"externalIds\":["
        "{\"id\":\"GA1.2.3\",\"type\":\"ga_client_id\",\"collection\":\"users\",\"encoding\":"
        "\"none\"},"
        "{\"id\":\"ADA@shop.de\",\"type\":\"email\",\"collection\":\"users\",\"encoding\":\"none\"}"
        ","
        "{\"id\":\"acc-9\",\"type\":\"account_id\",\"collection\":\"accounts\"},"
        "{\"id\":\"5d41402abc4b2a76b9719d911017c592\",\"type\":\"email\",\"encoding\":\"md5\"},"
        "{\"id\":1254459154682919,\"type\":\"psid\"}]}}");
    idn_list l;
    idn_extract(ev, false, "DE", &l);
    const int types[] = {IDN_USER_ID,   IDN_EMAIL, IDN_PHONE,    IDN_WHATSAPP,
                         IDN_MESSENGER, IDN_X,     IDN_EXTERNAL, IDN_ANONYMOUS_ID};
    const char *const values[] = {
        "u1",  "ada@shop.de",          "+491713859246", "+4917138592461", "1254459154682919",
        "ada", "ga_client_id:GA1.2.3", "3f1c2e8a-5b7d"};
    expect_ids(&l, types, values, 8);
    assert_int_equal(l.dropped, 0);
    assert_int_equal(l.junk, 0);
    assert_int_equal(l.invalid, 0);
    json_decref(ev);
}

/* A group event's traits are the group's: its email is not the person's. */
static void test_extract_group(void **state) {
    (void)state;
    json_t *ev = parse("{\"type\":\"group\",\"userId\":42,\"groupId\":\"g1\","
                       "\"traits\":{\"email\":\"office@acme.de\"},"
                       "\"context\":{\"traits\":{\"email\":\"ada@acme.de\"}}}");
    idn_list l;
    idn_extract(ev, true, NULL, &l);
    const int types[] = {IDN_USER_ID, IDN_EMAIL};
    const char *const values[] = {"42", "ada@acme.de"};
    expect_ids(&l, types, values, 2);
    /* Any other call's traits are the person's, and come first. */
    idn_extract(ev, false, NULL, &l);
    const int all_types[] = {IDN_USER_ID, IDN_EMAIL, IDN_EMAIL};
    const char *const all_values[] = {"42", "office@acme.de", "ada@acme.de"};
    expect_ids(&l, all_types, all_values, 3);
    json_decref(ev);
}

static void test_extract_junk_and_invalid(void **state) {
    (void)state;
    json_t *ev =
        parse("{\"type\":\"identify\",\"userId\":\"null\",\"anonymousId\":\"a-7\","
              "\"traits\":{\"email\":\"not-an-email\",\"phone\":\"555-555-5555\","
              "\"instagram\":{\"handle\":\"x\"},\"telegram\":null,\"tiktok\":1.5},"
              "\"context\":{\"externalIds\":[7,{\"type\":3,\"id\":\"x\"},"
              "{\"type\":\"crm\",\"id\":[1]},{\"type\":\"crm\"},"
              "{\"type\":\"crm\",\"id\":\"test\"},{\"type\":\"e\\u0000mail\",\"id\":\"x\"}]}}");
    idn_list l;
    idn_extract(ev, false, "US", &l);
    const int types[] = {IDN_ANONYMOUS_ID};
    const char *const values[] = {"a-7"};
    expect_ids(&l, types, values, 1);
    assert_int_equal(l.junk, 3); /* userId "null", the 555 phone, crm:test */
    /* email, instagram object, tiktok 1.5, externalIds[0] not an object, [1].type a number, [2].id
     * an array, [5].type with a NUL; [3] without id is skipped like a null. */
    assert_int_equal(l.invalid, 7);
    assert_string_equal(l.first_invalid.code, "invalid_field");
    assert_string_equal(l.first_invalid.field, "traits.email");
    assert_string_equal(l.first_invalid.message, "traits.email has no @");
    json_decref(ev);
}

/* More than IDN_EVENT_MAX identifiers: the best 16 are kept, in priority order. */
static void test_extract_cap(void **state) {
    (void)state;
    json_t *ext = json_array();
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%02d", i);
        json_array_append_new(ext, json_pack("{s:s, s:s}", "type", "crm", "id", id));
    }
    json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:o}}", "type", "track", "userId", "u9",
                           "anonymousId", "anon-9", "context", "externalIds", ext);
    idn_list l;
    idn_extract(ev, false, NULL, &l);
    assert_int_equal(l.n, IDN_EVENT_MAX);
    assert_int_equal(l.dropped, 6); /* the anonymous id and externals c15..c19 */
    assert_int_equal(l.ids[0].type, IDN_USER_ID);
    for (int i = 1; i < IDN_EVENT_MAX; i++) {
        char want[16];
        snprintf(want, sizeof want, "crm:c%02d", i - 1);
        assert_int_equal(l.ids[i].type, IDN_EXTERNAL);
        assert_string_equal(l.ids[i].value, want);
    }
    json_decref(ev);
}

/* Only the first 64 externalIds entries are read, whatever the array holds. */
static void test_extract_hostile(void **state) {
    (void)state;
    json_t *ext = json_array();
    for (int i = 0; i < 1000; i++)
        json_array_append_new(ext, json_integer(i));
    char *huge = malloc(100001);
    memset(huge, 'a', 100000);
    huge[100000] = '\0';
    json_t *deep = json_string("x");
    for (int i = 0; i < 200; i++)
        deep = json_pack("{s:o}", "a", deep);
    json_t *ev = json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:o}}", "type", "identify", "userId", huge,
                           "traits", "email", huge, "phone", deep, "context", "externalIds", ext);
    idn_list l;
    idn_extract(ev, false, "DE", &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.invalid, 3 + 64);
    assert_string_equal(l.first_invalid.field, "userId");
    json_decref(ev);
    free(huge);
    /* Not an object, and objects without anything. */
    idn_extract(NULL, false, NULL, &l);
    assert_int_equal(l.n, 0);
    json_t *arr = parse("[1,2]");
    idn_extract(arr, false, NULL, &l);
    assert_int_equal(l.n + l.invalid + l.junk, 0);
    json_decref(arr);
    json_t *odd = parse("{\"context\":[],\"traits\":\"x\"}");
    idn_extract(odd, false, NULL, &l);
    assert_int_equal(l.n + l.invalid + l.junk, 0);
    json_decref(odd);
}

/* The engine hands userId and anonymousId over beside its tree of an event, as text (ingest/ev.h):
 * idn_extract_ids() with them and the tree without them finds what idn_extract() finds in the
 * whole event, for ids given as strings and as numbers, with traits, context, junk and the cap. */
static void test_extract_ids_beside(void **state) {
    (void)state;
    static const char *const events[] = {
        "{\"anonymousId\":\"3f1c2e8a-5b7d\",\"userId\":\"u1\",\"traits\":{\"email\":\" "
        "Ada@Shop.DE\",\"phone\":\"0171 3859246\",\"twitter\":\"@Ada\"},\"context\":{\"traits\":"
        "{\"email\":\"ada@shop.de\",\"whatsapp\":\"4917138592461\"},\"externalIds\":[{\"id\":"
        "\"GA1.2.3\",\"type\":\"ga_client_id\",\"collection\":\"users\",\"encoding\":\"none\"}]}}",
        "{\"userId\":42,\"traits\":{\"email\":\"office@acme.de\"}}",
        "{\"userId\":\"null\",\"anonymousId\":\"a-7\",\"traits\":{\"email\":\"not-an-email\"}}",
        "{\"userId\":\"Ada@Shop.de\",\"anonymousId\":\"  \"}",
        "{\"anonymousId\":\"only-anon\",\"context\":{\"externalIds\":[{\"id\":\"c1\",\"type\":"
        "\"crm\"},{\"id\":\"c2\",\"type\":\"crm\"},{\"id\":\"c3\",\"type\":\"crm\"},{\"id\":\"c4\","
        "\"type\":\"crm\"},{\"id\":\"c5\",\"type\":\"crm\"},{\"id\":\"c6\",\"type\":\"crm\"},{"
        "\"id\":"
        "\"c7\",\"type\":\"crm\"},{\"id\":\"c8\",\"type\":\"crm\"},{\"id\":\"c9\",\"type\":\"crm\"}"
        ","
        "{\"id\":\"c10\",\"type\":\"crm\"},{\"id\":\"c11\",\"type\":\"crm\"},{\"id\":\"c12\","
        "\"type\":\"crm\"},{\"id\":\"c13\",\"type\":\"crm\"},{\"id\":\"c14\",\"type\":\"crm\"},"
        "{\"id\":\"c15\",\"type\":\"crm\"},{\"id\":\"c16\",\"type\":\"crm\"}]}}",
        "{\"userId\":\"u2\"}",
    };
    for (size_t i = 0; i < sizeof events / sizeof *events; i++) {
        json_t *ev = parse(events[i]);
        for (int group = 0; group < 2; group++) {
            idn_list whole, beside;
            idn_extract(ev, group, "DE", &whole);
            json_t *rest = json_deep_copy(ev);
            char texts[2][EV_NUMBER_TEXT_LEN + 64];
            const char *ids[2] = {NULL, NULL};
            static const char *const keys[2] = {"userId", "anonymousId"};
            for (int k = 0; k < 2; k++) {
                const json_t *v = json_object_get(ev, keys[k]);
                if (json_is_string(v)) {
                    snprintf(texts[k], sizeof texts[k], "%s", json_string_value(v));
                    ids[k] = texts[k];
                } else if (v) {
                    assert_true(ev_number_text(v, texts[k]));
                    ids[k] = texts[k];
                }
                json_object_del(rest, keys[k]);
            }
            idn_extract_ids(ids[0], ids[1], json_object_size(rest) ? rest : NULL, group, "DE",
                            &beside);
            assert_int_equal(beside.n, whole.n);
            assert_true(beside.n > 0);
            for (int j = 0; j < whole.n; j++) {
                assert_int_equal(beside.ids[j].type, whole.ids[j].type);
                assert_string_equal(beside.ids[j].value, whole.ids[j].value);
            }
            assert_int_equal(beside.dropped, whole.dropped);
            assert_int_equal(beside.junk, whole.junk);
            assert_int_equal(beside.invalid, whole.invalid);
            if (whole.invalid)
                assert_string_equal(beside.first_invalid.field, whole.first_invalid.field);
            /* The tree's own ids, if any, are not read. */
            json_object_set_new(rest, "userId", json_string("someone-else"));
            idn_extract_ids(ids[0], ids[1], rest, group, "DE", &beside);
            assert_int_equal(beside.n, whole.n);
            json_decref(rest);
        }
        json_decref(ev);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_cases),        cmocka_unit_test(test_types),
        cmocka_unit_test(test_countries),          cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_output_buffer),      cmocka_unit_test(test_length_not_nul),
        cmocka_unit_test(test_extract_identify),   cmocka_unit_test(test_extract_group),
        cmocka_unit_test(test_extract_ids_beside), cmocka_unit_test(test_extract_junk_and_invalid),
        cmocka_unit_test(test_extract_cap),        cmocka_unit_test(test_extract_hostile),
    };
    return cmocka_run_group_tests_name("idnorm", tests, NULL, NULL);
}
