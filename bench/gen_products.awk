# Generates N catalogue products as JSONL for `engaged import --products`.
#   awk -v n=100000 -f bench/gen_products.awk
# ids sku-000000 .., 50 brands, 200 categories under 20 departments, prices 5..500, stock 0..50 at
# one location (about 3% sold out), an image and a URL each: about 330 bytes a product.
BEGIN {
    if (n == "") n = 100000
    srand(7)
    for (i = 0; i < n; i++) {
        stock = (i % 33 == 5) ? 0 : 1 + i % 50
        printf "{\"id\":\"sku-%06d\",\"sku\":\"S%06d\",\"title\":\"Product %d\",\"brand\":\"brand-%d\",\"categories\":[\"Dept %d > Cat %d\"],\"price\":%d.%02d,\"currency\":\"EUR\",\"stock\":{\"main\":%d},\"url\":\"https://shop.example/p/sku-%06d\",\"image_url\":\"https://shop.example/img/sku-%06d.jpg\",\"tags\":[\"t%d\"]}\n", i, i, i, i % 50, i % 20, i % 200, 5 + (i * 37) % 495, i % 100, stock, i, i, i % 10
    }
}
