# Generates shopping sessions as Segment JSONL for `engaged import`: U shoppers, V product views
# each (one session, a minute apart), and an order of the last two viewed for every tenth shopper.
#   awk -v users=1000000 -v views=3 -v products=100000 -v prefix=rc1 -f bench/gen_reco.awk
# The first product of a session is drawn with a heavy head (int(products * r^3)), each next one
# near the previous (+1..+20): popular products and co-viewed neighbourhoods, as in a real shop.
# Shopper i is user-i; timestamps cover the 48 hours before `now` (seconds since the epoch).
BEGIN {
    if (users == "") users = 1000000
    if (views == "") views = 3
    if (products == "") products = 100000
    if (prefix == "") prefix = "rc"
    if (now == "") now = systime()
    srand(11)
    m = 0
    for (u = 0; u < users; u++) {
        t = now - 172800 + int(u * 172000 / users)
        p = int(products * rand() ^ 3)
        for (v = 0; v < views; v++) {
            if (v) { prev = p; p = (p + 1 + int(rand() * 20)) % products } else prev = -1
            printf "{\"type\":\"track\",\"userId\":\"user-%d\",\"event\":\"Product Viewed\",\"messageId\":\"%s-%d\",\"timestamp\":\"%s\",\"properties\":{\"product_id\":\"sku-%06d\"}}\n", u, prefix, m++, strftime("%Y-%m-%dT%H:%M:%SZ", t + 60 * v, 1), p
        }
        if (u % 10 == 0 && views > 1)
            printf "{\"type\":\"track\",\"userId\":\"user-%d\",\"event\":\"Order Completed\",\"messageId\":\"%s-%d\",\"timestamp\":\"%s\",\"properties\":{\"order_id\":\"o-%d\",\"currency\":\"EUR\",\"products\":[{\"product_id\":\"sku-%06d\",\"quantity\":1},{\"product_id\":\"sku-%06d\",\"quantity\":1}]}}\n", u, prefix, m++, strftime("%Y-%m-%dT%H:%M:%SZ", t + 60 * views, 1), u, prev, p
    }
}
