/* idn — identifier types, their normalisers and the junk tables; the rules are in idnorm.h. Four
 * tables carry everything that is policy: the types, the junk values every type shares, the email
 * placeholders, and the countries the phone normaliser knows. */
#include "c360/idnorm.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/jpick.h"

/* ---------------------------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------------------------- */

/* clang-format off */
static const idn_type types[IDN_NTYPES] = {
    [IDN_USER_ID]      = {"user_id",      {"userid", "user"},         IDN_NORM_EXACT,       1, IDN_USER_ID},
    [IDN_EMAIL]        = {"email",        {"email_address", "mail"},  IDN_NORM_EMAIL,       5, IDN_EMAIL},
    [IDN_PHONE]        = {"phone",        {"phone_number", "mobile"}, IDN_NORM_PHONE,       5, IDN_PHONE},
    [IDN_WHATSAPP]     = {"whatsapp",     {"wa_id"},                  IDN_NORM_WHATSAPP,   10, IDN_WHATSAPP},
    [IDN_MESSENGER]    = {"messenger",    {"psid"},                   IDN_NORM_DIGITS,     10, IDN_MESSENGER},
    [IDN_INSTAGRAM]    = {"instagram",    {NULL},                     IDN_NORM_HANDLE,     10, IDN_INSTAGRAM},
    [IDN_X]            = {"x",            {"twitter"},                IDN_NORM_HANDLE,     10, IDN_X},
    [IDN_TIKTOK]       = {"tiktok",       {NULL},                     IDN_NORM_HANDLE,     10, IDN_TIKTOK},
    [IDN_TELEGRAM]     = {"telegram",     {NULL},                     IDN_NORM_HANDLE,     10, IDN_TELEGRAM},
    [IDN_EXTERNAL]     = {"external",     {NULL},                     IDN_NORM_EXTERNAL,   10, IDN_EXTERNAL},
    [IDN_ANONYMOUS_ID] = {"anonymous_id", {"anonymousid"},            IDN_NORM_EXACT,    1000, IDN_ANONYMOUS_ID},
};
/* clang-format on */

/* Values that mean "nothing" in some language, SDK or form, for every type. Compared with the
 * value's surrounding whitespace removed, ignoring ASCII case. "0", "1" and "-1" are the ids of
 * test accounts and the defaults of integer columns; "[object Object]" is JavaScript's
 * String({}); "(null)" and "<nil>" are what C's printf and Go's fmt print for a null pointer. */
/* clang-format off */
#define JUNK(w) {w, sizeof w - 1}
static const struct {
    const char *word;
    size_t len; /* compared first: most values match no entry's length */
} junk_common[] = {
    JUNK(""), JUNK("null"), JUNK("undefined"), JUNK("none"),
    JUNK("nil"), JUNK("anonymous"), JUNK("unknown"), JUNK("n/a"),
    JUNK("na"), JUNK("0"), JUNK("-1"), JUNK("1"),
    JUNK("test"), JUNK("guest"), JUNK("user"), JUNK("[object object]"),
    JUNK("nan"), JUNK("false"), JUNK("true"), JUNK("(null)"),
    JUNK("<nil>"), JUNK("00000000-0000-0000-0000-000000000000"),
};
#undef JUNK
/* clang-format on */

/* Email addresses that forms and test scripts put in when they have none. Lower-case. */
static const char *const junk_email_address[] = {
    "test@test.com",
    "example@example.com",
    "a@a.com",
    "test@example.com",
    "email@example.com",
    "user@example.com",
    "name@example.com",
    "you@example.com",
    "your@email.com",
    "email@email.com",
    "test@gmail.com",
    "abc@abc.com",
    "asdf@asdf.com",
    "no@no.com",
    "none@none.com",
    "null@null.com",
    "x@x.com",
    "me@me.com",
    "noemail@noemail.com",
};
/* Mailboxes that never belong to a customer: whatever the domain, the address is junk. */
static const char *const junk_email_local[] = {
    "noreply",      "no-reply",      "no_reply",   "donotreply", "do-not-reply",
    "do_not_reply", "mailer-daemon", "postmaster", "nobody",
};
/* Domains whose every address is a placeholder. */
static const char *const junk_email_domain[] = {"test.com", "noemail.com", "no-email.com",
                                                "nomail.com"};
/* Top-level domains reserved for testing and documentation (RFC 2606, RFC 6761). example.com is
 * not among them on purpose: documentation and test suites everywhere use it for real-looking
 * addresses; only its best-known placeholders are in junk_email_address. */
static const char *const junk_email_tld[] = {"test", "example", "invalid", "localhost"};

/* A country the phone normaliser knows. Lengths are of the national significant number (what
 * follows the calling code), taken wide: a number the operator never issued is only a missed
 * link, while a real one refused is a customer the shop cannot reach. */
typedef struct country {
    char iso[3];       /* ISO 3166 alpha-2 */
    const char *cc;    /* calling code */
    const char *trunk; /* national prefix dropped from national numbers; "" for none */
    /* International prefixes other than "00" that people dial from this country, longest first. */
    const char *exits[3];
    unsigned char min, max; /* national significant number length */
} country;

/* Calling codes are prefix-free (ITU-T E.164), so at most one code matches a number; US and CA
 * share "1" with the same lengths, so either row gives the same answer. */
/* clang-format off */
static const country countries[] = {
    {"US", "1",   "1",  {"011"},               10, 10},
    {"CA", "1",   "1",  {"011"},               10, 10},
    {"GB", "44",  "0",  {NULL},                 7, 10},
    {"IE", "353", "0",  {NULL},                 7,  9},
    {"DE", "49",  "0",  {NULL},                 6, 11},
    {"AT", "43",  "0",  {NULL},                 4, 13},
    {"CH", "41",  "0",  {NULL},                 9, 12},
    {"FR", "33",  "0",  {NULL},                 9,  9},
    {"BE", "32",  "0",  {NULL},                 8,  9},
    {"NL", "31",  "0",  {NULL},                 7, 10},
    {"LU", "352", "",   {NULL},                 4, 11},
    {"IT", "39",  "",   {NULL},                 6, 11}, /* the 0 of landlines is part of the number */
    {"ES", "34",  "",   {NULL},                 9,  9},
    {"PT", "351", "",   {NULL},                 9,  9},
    {"SE", "46",  "0",  {NULL},                 7, 10},
    {"NO", "47",  "",   {NULL},                 5,  8},
    {"DK", "45",  "",   {NULL},                 8,  8},
    {"FI", "358", "0",  {NULL},                 5, 12},
    {"PL", "48",  "",   {NULL},                 9,  9},
    {"CZ", "420", "",   {NULL},                 9,  9},
    {"HU", "36",  "06", {NULL},                 8,  9},
    {"RO", "40",  "0",  {NULL},                 9,  9},
    {"GR", "30",  "",   {NULL},                10, 10},
    {"TR", "90",  "0",  {NULL},                10, 10},
    {"RU", "7",   "8",  {"810"},               10, 10},
    {"UA", "380", "0",  {NULL},                 9,  9},
    {"IL", "972", "0",  {NULL},                 8,  9},
    {"AE", "971", "0",  {NULL},                 8,  9},
    {"SA", "966", "0",  {NULL},                 8,  9},
    {"EG", "20",  "0",  {NULL},                 8, 10},
    {"ZA", "27",  "0",  {NULL},                 9,  9},
    {"NG", "234", "0",  {"009"},                8, 10},
    {"KE", "254", "0",  {"000"},                9,  9},
    {"IN", "91",  "0",  {NULL},                10, 10},
    {"PK", "92",  "0",  {NULL},                 9, 10},
    {"BD", "880", "0",  {NULL},                 8, 10},
    {"CN", "86",  "0",  {NULL},                 9, 11},
    {"JP", "81",  "0",  {"010"},                9, 10},
    {"KR", "82",  "0",  {"001"},                8, 10},
    {"SG", "65",  "",   {"000", "001"},         8,  8},
    {"HK", "852", "",   {"001"},                8,  8},
    {"ID", "62",  "0",  {"001"},                8, 12},
    {"PH", "63",  "0",  {NULL},                 8, 10},
    {"TH", "66",  "0",  {"001"},                8,  9},
    {"VN", "84",  "0",  {NULL},                 9, 10},
    {"MY", "60",  "0",  {NULL},                 8, 10},
    {"AU", "61",  "0",  {"0011"},               9,  9},
    {"NZ", "64",  "0",  {NULL},                 8, 10},
    {"BR", "55",  "0",  {NULL},                10, 11},
    {"MX", "52",  "",   {NULL},                10, 11}, /* 11: the old mobile "1" after 52 */
    {"AR", "54",  "0",  {NULL},                10, 11}, /* 11: the mobile "9" after 54 */
    {"CL", "56",  "",   {NULL},                 9,  9},
    {"CO", "57",  "",   {"009", "007", "005"},  8, 10},
    {"PE", "51",  "0",  {NULL},                 8,  9},
};
/* clang-format on */

#define NCOUNTRIES (sizeof countries / sizeof countries[0])
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* E.164: at most 15 digits with the calling code. The shortest real numbers (small island states)
 * have 7. */
#define E164_MAX 15
#define E164_MIN 7
/* More digits than this before the prefixes are read is certainly not a phone number. */
#define PHONE_SCAN_MAX 32
#define HANDLE_MAX 64
#define PSID_MAX 32
#define EMAIL_MAX 254
#define EMAIL_LOCAL_MAX 64
#define LABEL_MAX 63
/* A run of ascending or descending digits at least this long is a made-up number. */
#define RUN_MIN 7

/* ---------------------------------------------------------------------------------------------
 * Small helpers (ASCII only: no locale)
 * ------------------------------------------------------------------------------------------- */

static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
static bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static unsigned char lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Narrows s[0..*n) to its part without surrounding ASCII whitespace. */
static const char *trim(const char *s, size_t *n) {
    while (*n && is_space((unsigned char)s[0]))
        s++, (*n)--;
    while (*n && is_space((unsigned char)s[*n - 1]))
        (*n)--;
    return s;
}

/* s[0..n) equals the NUL-terminated lower-case word w, ignoring ASCII case. */
static bool eq_nocase(const char *s, size_t n, const char *w) {
    size_t i = 0;
    for (; i < n; i++)
        if (w[i] == '\0' || lower((unsigned char)s[i]) != (unsigned char)w[i]) return false;
    return w[i] == '\0';
}

static bool has_prefix(const char *s, size_t n, const char *p) {
    size_t k = strlen(p);
    return k <= n && memcmp(s, p, k) == 0;
}

/* The entry of junk_common that s[0..n) (already trimmed) matches, or NULL. */
static const char *junk_word(const char *s, size_t n) {
    for (size_t i = 0; i < NELEMS(junk_common); i++)
        if (junk_common[i].len == n && eq_nocase(s, n, junk_common[i].word))
            return junk_common[i].word;
    return NULL;
}

/* Reports junk: "email is a placeholder address: test@test.com". what is always a table entry or
 * a rule's name, never the input, which may be any bytes. */
static int junk(ev_error *err, const char *subject, const char *kind, const char *what) {
    ev_error_set(err, IDN_JUNK_CODE, subject, "%s is %s: %s", subject, kind,
                 what[0] ? what : "(empty)");
    return IDN_JUNK;
}

static int bad(ev_error *err, const char *subject, const char *why) {
    ev_error_set(err, "invalid_field", subject, "%s %s", subject, why);
    return -1;
}

/* Copies s[0..n) into out as a C string; -1 when it does not fit. */
static int emit(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                ev_error *err) {
    if (n >= outlen) {
        ev_error_set(err, "internal", subject, "%s: the output buffer holds %zu bytes, not %zu",
                     subject, outlen, n + 1);
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Exact ids (user_id, anonymous_id) and the id part of external ids
 * ------------------------------------------------------------------------------------------- */

/* Checks an id kept byte for byte: 1..max bytes, no NUL, not junk. */
static int check_exact(const char *s, size_t n, size_t max, const char *subject, ev_error *err) {
    size_t tn = n;
    const char *t = trim(s, &tn);
    const char *w = junk_word(t, tn);
    if (w) return junk(err, subject, "a placeholder", w);
    if (memchr(s, '\0', n)) {
        ev_error_set(err, "invalid_field", subject, "%s contains a NUL byte", subject);
        return -1;
    }
    if (n > max) {
        ev_error_set(err, "invalid_field", subject, "%s is longer than %zu bytes", subject, max);
        return -1;
    }
    return 0;
}

static int norm_exact(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                      ev_error *err) {
    int rc = check_exact(s, n, IDN_VALUE_MAX, subject, err);
    return rc ? rc : emit(s, n, out, outlen, subject, err);
}

/* ---------------------------------------------------------------------------------------------
 * Email
 * ------------------------------------------------------------------------------------------- */

/* RFC 5322 atext besides letters and digits. */
static bool is_atext(unsigned char c) {
    return is_alpha(c) || is_digit(c) || (c >= 0x80) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_ldh(unsigned char c) {
    return is_alpha(c) || is_digit(c) || c == '-';
}

/* IDN_JUNK (with err filled) when the email junk tables match e (lower-case, valid), else 0. */
static int email_junk(const char *e, size_t n, const char *subject, ev_error *err) {
    for (size_t i = 0; i < NELEMS(junk_email_address); i++)
        if (strcmp(e, junk_email_address[i]) == 0)
            return junk(err, subject, "a placeholder address", junk_email_address[i]);
    const char *at = memchr(e, '@', n);
    size_t local = (size_t)(at - e);
    const char *domain = at + 1;
    for (size_t i = 0; i < NELEMS(junk_email_local); i++)
        if (strlen(junk_email_local[i]) == local && memcmp(e, junk_email_local[i], local) == 0)
            return junk(err, subject, "a mailbox that is never a customer's", junk_email_local[i]);
    for (size_t i = 0; i < NELEMS(junk_email_domain); i++)
        if (strcmp(domain, junk_email_domain[i]) == 0)
            return junk(err, subject, "at a placeholder domain", junk_email_domain[i]);
    const char *dot = strrchr(domain, '.');
    const char *tld = dot ? dot + 1 : domain;
    for (size_t i = 0; i < NELEMS(junk_email_tld); i++)
        if (strcmp(tld, junk_email_tld[i]) == 0)
            return junk(err, subject, "at a domain reserved for testing", junk_email_tld[i]);
    return 0;
}

static int norm_email(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                      ev_error *err) {
    s = trim(s, &n);
    const char *w = junk_word(s, n);
    if (w) return junk(err, subject, "a placeholder", w);
    if (n > EMAIL_MAX) return bad(err, subject, "is longer than 254 bytes");
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f)
            return bad(err, subject, "contains a space or a control character");
        if (c == '@') {
            if (at) return bad(err, subject, "has more than one @");
            at = s + i;
        }
    }
    if (!at) return bad(err, subject, "has no @");
    size_t ln = (size_t)(at - s), dn = n - ln - 1;
    if (ln == 0) return bad(err, subject, "has nothing before the @");
    if (ln > EMAIL_LOCAL_MAX) return bad(err, subject, "has more than 64 bytes before the @");
    if (dn == 0) return bad(err, subject, "has no domain after the @");
    /* The local part is a dot-atom: atext runs separated by single dots. Quoted local parts are
     * legal but practically unused, and accepting them would mean parsing quoting rules. */
    for (size_t i = 0; i < ln; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i == 0 || i == ln - 1 || s[i + 1] == '.')
                return bad(err, subject, "has a misplaced dot before the @");
        } else if (!is_atext(c)) {
            return bad(err, subject, "has a character not allowed before the @");
        }
    }
    /* The domain: LDH labels of 1..63 bytes separated by single dots. */
    const char *d = at + 1;
    size_t label = 0;
    bool all_digits = true; /* in the last label */
    for (size_t i = 0; i <= dn; i++) {
        unsigned char c = i < dn ? (unsigned char)d[i] : '.';
        if (c == '.') {
            if (label == 0) return bad(err, subject, "has an empty label in its domain");
            if (d[i - 1] == '-')
                return bad(err, subject, "has a domain label ending with a hyphen");
            if (i < dn) label = 0, all_digits = true;
            continue;
        }
        if (!is_ldh(c)) return bad(err, subject, "has a character not allowed in a domain");
        if (label == 0 && c == '-')
            return bad(err, subject, "has a domain label starting with a hyphen");
        if (++label > LABEL_MAX)
            return bad(err, subject, "has a domain label longer than 63 bytes");
        if (!is_digit(c)) all_digits = false;
    }
    if (all_digits) return bad(err, subject, "has an IP address or a number as its domain");
    char e[EMAIL_MAX + 1];
    for (size_t i = 0; i < n; i++)
        e[i] = (char)lower((unsigned char)s[i]);
    e[n] = '\0';
    int rc = email_junk(e, n, subject, err);
    return rc ? rc : emit(e, n, out, outlen, subject, err);
}

/* ---------------------------------------------------------------------------------------------
 * Phone numbers
 * ------------------------------------------------------------------------------------------- */

static const country *country_by_iso(const char *iso) {
    if (!iso || !iso[0] || !iso[1] || iso[2]) return NULL;
    for (size_t i = 0; i < NCOUNTRIES; i++)
        if (lower((unsigned char)iso[0]) == lower((unsigned char)countries[i].iso[0]) &&
            lower((unsigned char)iso[1]) == lower((unsigned char)countries[i].iso[1]))
            return &countries[i];
    return NULL;
}

/* The country whose calling code starts the digits d[0..n), or NULL. */
static const country *country_by_code(const char *d, size_t n) {
    for (size_t i = 0; i < NCOUNTRIES; i++)
        if (has_prefix(d, n, countries[i].cc)) return &countries[i];
    return NULL;
}

bool idn_country_known(const char *cc) {
    return country_by_iso(cc) != NULL;
}

static bool same_digit(const char *d, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (d[i] != d[0]) return false;
    return n > 0;
}

/* d[0..n) is one run of consecutive digits going up or down, wrapping (1234567890, 9876543210). */
static bool digit_run(const char *d, size_t n) {
    if (n < RUN_MIN) return false;
    bool up = true, down = true;
    for (size_t i = 1; i < n; i++) {
        int step = (d[i] - d[i - 1] + 10) % 10;
        up = up && step == 1;
        down = down && step == 9;
    }
    return up || down;
}

/* The junk rules for a full number d (calling code first) whose national part starts at nat. */
static int phone_junk(const char *d, size_t n, size_t nat, const country *c, const char *subject,
                      ev_error *err) {
    if (same_digit(d + nat, n - nat) || same_digit(d, n))
        return junk(err, subject, "a made-up number", "every digit the same");
    if (digit_run(d + nat, n - nat) || digit_run(d, n))
        return junk(err, subject, "a made-up number", "a run of consecutive digits");
    /* 555-0100 .. 555-0199 are reserved for fiction in the North American plan. */
    if (c && strcmp(c->cc, "1") == 0 && n - nat == 10 && memcmp(d + nat + 3, "55501", 5) == 0)
        return junk(err, subject, "a made-up number", "the fictional 555-01XX range");
    return 0;
}

/* Finishes an international number whose digits (calling code first) are d[0..n): checks it and
 * writes "+<digits>". Both the national and the international path end here, so a result reads
 * back as itself. */
static int phone_finish(char *d, size_t n, char *out, size_t outlen, const char *subject,
                        ev_error *err) {
    if (n == 0 || d[0] == '0') {
        ev_error_set(err, "invalid_field", subject, "%s has no valid country code", subject);
        return -1;
    }
    const country *c = country_by_code(d, n);
    size_t nat = c ? strlen(c->cc) : 0;
    /* "+49 0171 ..." is common: people keep the trunk 0 after the country code. Only countries
     * whose trunk prefix is "0" never start a national number with 0, so only there is it
     * dropped, and only once (so the result reads back as itself). */
    if (c && strcmp(c->trunk, "0") == 0 && nat < n && d[nat] == '0') {
        memmove(d + nat, d + nat + 1, n - nat - 1);
        n--;
        if (nat < n && d[nat] == '0') {
            ev_error_set(err, "invalid_field", subject,
                         "%s has more than one 0 after its country code", subject);
            return -1;
        }
    }
    int rc = phone_junk(d, n, nat, c, subject, err);
    if (rc) return rc;
    if (n > E164_MAX || n < E164_MIN) {
        ev_error_set(err, "invalid_field", subject, "%s has %zu digits; E.164 allows %d to %d",
                     subject, n, E164_MIN, E164_MAX);
        return -1;
    }
    if (c && (n - nat < c->min || n - nat > c->max)) {
        ev_error_set(err, "invalid_field", subject,
                     "%s has %zu digits after the country code +%s; %s numbers have %d to %d",
                     subject, n - nat, c->cc, c->iso, c->min, c->max);
        return -1;
    }
    char e[E164_MAX + 2];
    e[0] = '+';
    memcpy(e + 1, d, n);
    return emit(e, n + 1, out, outlen, subject, err);
}

/* bare_is_intl: a number without "+", "00" or an exit code, and not starting with 0, is already
 * international (WhatsApp's wa_id). */
static int norm_phone(const char *s, size_t n, bool bare_is_intl, const char *default_country,
                      char *out, size_t outlen, const char *subject, ev_error *err) {
    s = trim(s, &n);
    const char *w = junk_word(s, n);
    if (w) return junk(err, subject, "a placeholder", w);
    if (n >= 4 && eq_nocase(s, 4, "tel:")) s += 4, n -= 4;

    /* Digits only, remembering a leading '+'. A "(0)" needs nothing special: its 0 stays, and
     * phone_finish() drops a 0 after the calling code where that is the trunk prefix. */
    char d[PHONE_SCAN_MAX + 4];
    size_t nd = 0;
    bool plus = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_digit(c)) {
            if (nd == PHONE_SCAN_MAX) return bad(err, subject, "has too many digits");
            d[nd++] = (char)c;
        } else if (c == '+') {
            if (plus || nd > 0) return bad(err, subject, "has a + that does not lead it");
            plus = true;
        } else if (!(c == ' ' || c == '\t' || c == '.' || c == '-' || c == '/' || c == '(' ||
                     c == ')')) {
            return bad(err, subject, "has a character that is not a digit or a separator");
        }
    }
    if (nd == 0) return bad(err, subject, "has no digits");

    const country *home = country_by_iso(default_country);
    size_t skip = SIZE_MAX; /* where the international digits start, once known */
    if (plus) {
        skip = 0;
    } else {
        for (size_t k = 0; home && k < NELEMS(home->exits) && home->exits[k]; k++)
            if (has_prefix(d, nd, home->exits[k])) {
                skip = strlen(home->exits[k]);
                break;
            }
        if (skip == SIZE_MAX && has_prefix(d, nd, "00")) skip = 2;
    }
    if (skip != SIZE_MAX) {
        memmove(d, d + skip, nd - skip);
        return phone_finish(d, nd - skip, out, outlen, subject, err);
    }
    if (bare_is_intl && d[0] != '0') return phone_finish(d, nd, out, outlen, subject, err);
    if (!home) {
        if (default_country && default_country[0])
            return bad(err, subject,
                       "is a national number, and the default country is "
                       "not one engaged knows");
        return bad(err, subject,
                   "has no country code (start it with +), and no default country is set");
    }

    /* A national number: find its national significant part. */
    size_t cl = strlen(home->cc), tl = strlen(home->trunk);
    const char *nsn = d;
    size_t nn = nd;
    if (tl && has_prefix(d, nd, home->trunk)) {
        nsn += tl, nn -= tl;
    } else if ((nn < home->min || nn > home->max) && has_prefix(d, nd, home->cc) &&
               nd - cl >= home->min && nd - cl <= home->max) {
        return phone_finish(d, nd, out, outlen, subject, err); /* a "+" lost */
    }
    char full[PHONE_SCAN_MAX + 8];
    memcpy(full, home->cc, cl);
    memcpy(full + cl, nsn, nn);
    return phone_finish(full, cl + nn, out, outlen, subject, err);
}

/* ---------------------------------------------------------------------------------------------
 * Messenger ids, social handles, external ids
 * ------------------------------------------------------------------------------------------- */

static int norm_digits(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                       ev_error *err) {
    s = trim(s, &n);
    const char *w = junk_word(s, n);
    if (w) return junk(err, subject, "a placeholder", w);
    if (n > PSID_MAX) return bad(err, subject, "is longer than 32 digits");
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)s[i])) return bad(err, subject, "must be decimal digits only");
    return emit(s, n, out, outlen, subject, err);
}

static int norm_handle(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                       ev_error *err) {
    s = trim(s, &n);
    if (n && s[0] == '@') s++, n--;
    const char *w = junk_word(s, n);
    if (w) return junk(err, subject, "a placeholder", w);
    if (n > HANDLE_MAX) return bad(err, subject, "is longer than 64 bytes");
    char h[HANDLE_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = lower((unsigned char)s[i]);
        if (!(is_alpha(c) || is_digit(c) || c == '.' || c == '_'))
            return bad(err, subject, "may only hold letters, digits, '.' and '_'");
        h[i] = (char)c;
    }
    return emit(h, n, out, outlen, subject, err);
}

static int norm_external(const char *s, size_t n, char *out, size_t outlen, const char *subject,
                         ev_error *err) {
    const char *colon = memchr(s, ':', n);
    if (!colon) return bad(err, subject, "must be \"<type>:<id>\"");
    size_t tn = (size_t)(colon - s);
    if (tn == 0 || tn > IDN_EXTERNAL_TYPE_MAX)
        return bad(err, subject, "must have a type of 1 to 32 bytes before the ':'");
    char v[IDN_VALUE_LEN];
    for (size_t i = 0; i < tn; i++) {
        unsigned char c = lower((unsigned char)s[i]);
        if (!(is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-'))
            return bad(err, subject, "has a type that is not [a-z0-9_.-]");
        v[i] = (char)c;
    }
    v[tn] = '\0';
    if (idn_type_lookup(v) >= 0)
        return bad(err, subject, "names a type that has its own kind of identifier");
    int rc = check_exact(colon + 1, n - tn - 1, IDN_VALUE_MAX - tn - 1, subject, err);
    if (rc) return rc;
    memcpy(v + tn, colon, n - tn);
    return emit(v, n, out, outlen, subject, err);
}

/* ---------------------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------------------- */

int idn_type_lookup(const char *name) {
    if (!name) return -1;
    size_t n = strlen(name);
    for (int t = 0; t < IDN_NTYPES; t++) {
        if (eq_nocase(name, n, types[t].name)) return t;
        for (size_t k = 0; k < NELEMS(types[t].aliases) && types[t].aliases[k]; k++)
            if (eq_nocase(name, n, types[t].aliases[k])) return t;
    }
    return -1;
}

const idn_type *idn_type_get(int type) {
    return type >= 0 && type < IDN_NTYPES ? &types[type] : NULL;
}

/* idn_normalize() with the subject its messages name: the type, or a path in an event. */
static int normalize_as(int type, const char *in, size_t len, char *out, size_t outlen,
                        const char *cc, const char *subject, ev_error *err) {
    switch (types[type].norm) {
    case IDN_NORM_EXACT:
        return norm_exact(in, len, out, outlen, subject, err);
    case IDN_NORM_EMAIL:
        return norm_email(in, len, out, outlen, subject, err);
    case IDN_NORM_PHONE:
        return norm_phone(in, len, false, cc, out, outlen, subject, err);
    case IDN_NORM_WHATSAPP:
        return norm_phone(in, len, true, cc, out, outlen, subject, err);
    case IDN_NORM_DIGITS:
        return norm_digits(in, len, out, outlen, subject, err);
    case IDN_NORM_HANDLE:
        return norm_handle(in, len, out, outlen, subject, err);
    case IDN_NORM_EXTERNAL:
        return norm_external(in, len, out, outlen, subject, err);
    }
    return -1;
}

int idn_normalize(int type, const char *in, size_t len, char *out, size_t outlen,
                  const char *default_country, ev_error *err) {
    if (type < 0 || type >= IDN_NTYPES) {
        ev_error_set(err, "internal", "", "identifier type %d does not exist", type);
        return -1;
    }
    if (!in) in = "", len = 0;
    return normalize_as(type, in, len, out, outlen, default_country, types[type].name, err);
}

/* ---------------------------------------------------------------------------------------------
 * Extraction from an event
 * ------------------------------------------------------------------------------------------- */

/* The most context.externalIds[] entries read. */
#define EXTERNAL_IDS_MAX 64

typedef struct extractor {
    idn_list *out;
    const char *cc;
} extractor;

/* Adds (type, value) in priority order unless it is there already; past IDN_EVENT_MAX the least
 * important identifier is the one left out. */
static void add(idn_list *l, int type, const char *value) {
    for (int i = 0; i < l->n; i++)
        if (l->ids[i].type == type && strcmp(l->ids[i].value, value) == 0) return;
    int pos = l->n;
    while (pos > 0 && types[l->ids[pos - 1].type].priority > types[type].priority)
        pos--;
    if (l->n == IDN_EVENT_MAX) {
        l->dropped++;
        if (pos == IDN_EVENT_MAX) return;
        l->n--;
    }
    memmove(&l->ids[pos + 1], &l->ids[pos], (size_t)(l->n - pos) * sizeof l->ids[0]);
    l->ids[pos].type = type;
    size_t n = strnlen(value, sizeof l->ids[pos].value - 1);
    memcpy(l->ids[pos].value, value, n);
    l->ids[pos].value[n] = '\0';
    l->n++;
}

static void note_invalid(idn_list *l, const ev_error *e) {
    if (l->invalid++ == 0) l->first_invalid = *e;
}

/* Normalises s[0..n), found at path, as the given type and adds it. */
static void take_text(extractor *x, int type, const char *s, size_t n, const char *path) {
    ev_error e = {0};
    char value[IDN_VALUE_LEN];
    int rc = normalize_as(type, s, n, value, sizeof value, x->cc, path, &e);
    if (rc == 0)
        add(x->out, type, value);
    else if (rc == IDN_JUNK)
        x->out->junk++;
    else
        note_invalid(x->out, &e);
}

/* The text of an identifier in JSON: a string, or a whole number as its decimal string (as
 * ev_normalize() reads ids). Returns false, counting the value invalid, for anything else. */
static bool id_text(extractor *x, const json_t *v, const char *path, char num[EV_NUMBER_TEXT_LEN],
                    const char **s, size_t *n) {
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *n = json_string_length(v);
        return true;
    }
    if (ev_number_text(v, num)) {
        *s = num;
        *n = strlen(num);
        return true;
    }
    ev_error e = {0};
    ev_error_set(&e, "invalid_field", path, "%s must be a string", path);
    note_invalid(x->out, &e);
    return false;
}

/* Normalises the JSON value found at path as the given type and adds it; absent and null are
 * skipped. */
static void take(extractor *x, int type, const json_t *v, const char *path) {
    if (!v || json_is_null(v)) return;
    char num[EV_NUMBER_TEXT_LEN];
    const char *s;
    size_t n;
    if (id_text(x, v, path, num, &s, &n)) take_text(x, type, s, n, path);
}

/* The trait keys read for the types that come from traits, with the type each means. */
static const struct {
    const char *key;
    int type;
} trait_keys[] = {
    {"email", IDN_EMAIL},         {"phone", IDN_PHONE},         {"whatsapp", IDN_WHATSAPP},
    {"messenger", IDN_MESSENGER}, {"instagram", IDN_INSTAGRAM}, {"x", IDN_X},
    {"twitter", IDN_X},           {"tiktok", IDN_TIKTOK},       {"telegram", IDN_TELEGRAM},
};

static void take_traits(extractor *x, const json_t *traits, const char *where) {
    if (!json_is_object(traits)) return;
    for (size_t i = 0; i < NELEMS(trait_keys); i++) {
        const json_t *v = json_object_get(traits, trait_keys[i].key);
        if (!v) continue; /* the path is only written for what is there */
        char path[64];
        snprintf(path, sizeof path, "%s.%s", where, trait_keys[i].key);
        take(x, trait_keys[i].type, v, path);
    }
}

static void take_external(extractor *x, const json_t *e, size_t i) {
    char path[64];
    snprintf(path, sizeof path, "context.externalIds[%zu]", i);
    ev_error err = {0};
    if (!json_is_object(e)) {
        ev_error_set(&err, "invalid_field", path, "%s must be an object", path);
        note_invalid(x->out, &err);
        return;
    }
    const json_t *coll = json_object_get(e, "collection");
    const json_t *enc = json_object_get(e, "encoding");
    if (json_is_string(coll) && strcmp(json_string_value(coll), "users") != 0) return;
    if (json_is_string(enc) && strcmp(json_string_value(enc), "none") != 0) return;
    const json_t *type = json_object_get(e, "type");
    const json_t *id = json_object_get(e, "id");
    char tpath[80], ipath[80];
    snprintf(tpath, sizeof tpath, "%s.type", path);
    snprintf(ipath, sizeof ipath, "%s.id", path);
    if (!json_is_string(type)) {
        ev_error_set(&err, "invalid_field", tpath, "%s must be a string", tpath);
        note_invalid(x->out, &err);
        return;
    }
    if (strlen(json_string_value(type)) != json_string_length(type)) {
        ev_error_set(&err, "invalid_field", tpath, "%s contains a NUL byte", tpath);
        note_invalid(x->out, &err);
        return;
    }
    int t = idn_type_lookup(json_string_value(type));
    if (t >= 0 && t != IDN_EXTERNAL) {
        take(x, t, id, ipath);
        return;
    }
    /* Any other type: the value is "<type>:<id>", checked by the external normaliser. */
    if (!id || json_is_null(id)) return;
    char num[EV_NUMBER_TEXT_LEN];
    const char *s;
    size_t n;
    if (!id_text(x, id, ipath, num, &s, &n)) return;
    size_t tn = json_string_length(type);
    if (tn + 1 + n > IDN_VALUE_MAX) {
        ev_error_set(&err, "invalid_field", path, "%s is longer than %d bytes as \"type:id\"", path,
                     IDN_VALUE_MAX);
        note_invalid(x->out, &err);
        return;
    }
    char joined[IDN_VALUE_LEN];
    memcpy(joined, json_string_value(type), tn);
    joined[tn] = ':';
    memcpy(joined + tn + 1, s, n);
    take_text(x, IDN_EXTERNAL, joined, tn + 1 + n, path);
}

/* What idn_extract() reads beyond userId and anonymousId: traits (not for a group call) and
 * context. */
static void extract_rest(extractor *x, const json_t *traits, const json_t *ctx, bool group) {
    if (!group) take_traits(x, traits, "traits");
    if (!json_is_object(ctx)) return;
    static const char *const ctx_read[2] = {"traits", "externalIds"};
    const json_t *c[2];
    jpick(ctx, ctx_read, 2, c);
    take_traits(x, c[0], "context.traits");
    const json_t *ext = c[1];
    if (!json_is_array(ext)) return;
    size_t n = json_array_size(ext);
    for (size_t i = 0; i < n && i < EXTERNAL_IDS_MAX; i++)
        take_external(x, json_array_get(ext, i), i);
}

void idn_extract(const json_t *event, bool group, const char *default_country, idn_list *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(event)) return;
    extractor x = {out, default_country};
    enum { USER, ANON, TRAITS, CONTEXT, NREAD };
    static const char *const read[NREAD] = {"userId", "anonymousId", "traits", "context"};
    const json_t *m[NREAD];
    jpick(event, read, NREAD, m);
    take(&x, IDN_USER_ID, m[USER], "userId");
    take(&x, IDN_ANONYMOUS_ID, m[ANON], "anonymousId");
    extract_rest(&x, m[TRAITS], m[CONTEXT], group);
}

void idn_extract_ids(const char *user_id, const char *anonymous_id, const json_t *event, bool group,
                     const char *default_country, idn_list *out) {
    memset(out, 0, sizeof *out);
    extractor x = {out, default_country};
    if (user_id) take_text(&x, IDN_USER_ID, user_id, strlen(user_id), "userId");
    if (anonymous_id)
        take_text(&x, IDN_ANONYMOUS_ID, anonymous_id, strlen(anonymous_id), "anonymousId");
    if (!json_is_object(event)) return;
    enum { TRAITS, CONTEXT, NREAD };
    static const char *const read[NREAD] = {"traits", "context"};
    const json_t *m[NREAD];
    jpick(event, read, NREAD, m);
    extract_rest(&x, m[TRAITS], m[CONTEXT], group);
}
