# Generates N Segment track events as JSONL (one per line) for `engaged import`, each with a unique
# messageId "<prefix>-<i>".  Usage: awk -v n=1000000 -v prefix=gen1 -f bench/gen_events.awk
# About 300 bytes per event: userId, event "Product Viewed", properties (product_id, price, name,
# category, currency), context.library.  Users and products cycle so that the store has realistic
# per-user history rather than one event per user.
BEGIN {
    if (n == "") n = 1000000
    if (prefix == "") prefix = "gen"
    split("Organic Cotton T-Shirt|Merino Wool Sweater|Canvas Sneakers|Leather Belt|Linen Shirt|Denim Jacket|Wool Beanie|Running Shorts", names, "|")
    split("Apparel|Knitwear|Footwear|Accessories|Apparel|Outerwear|Accessories|Sportswear", cats, "|")
    for (i = 0; i < n; i++) {
        p = i % 5000
        k = p % 8 + 1
        printf "{\"type\":\"track\",\"userId\":\"user-%d\",\"event\":\"Product Viewed\",\"messageId\":\"%s-%d\",\"properties\":{\"product_id\":\"sku-%05d\",\"price\":%d.99,\"name\":\"%s\",\"category\":\"%s\",\"currency\":\"USD\"},\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"},\"ip\":\"203.0.113.%d\"}}\n", (i * 7919) % 100000, prefix, i, p, 9 + p % 90, names[k], cats[k], i % 250 + 1
    }
}
