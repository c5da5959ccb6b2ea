# Deterministic Istio TEXT access log for benches/logs.sh: about 300-byte lines, 100 a second,
# mostly 200s, some 404s, 503 UC on an inbound cluster and 503 UF,URX connection failures.
# mawk and gawk both run it: no strftime, the clock is computed by hand.
BEGIN {
    srand(42)
    split("ratings reviews details productpage cart payment", svc, " ")
    split("GET GET GET POST GET PUT", meth, " ")
    uc = "upstream_reset_before_response_started{connection_termination}"
    cf = "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}"
    for (i = 0; i < lines; i++) {
        t = int(i / 100); ms = (i * 7) % 1000
        h = int(t / 3600) % 24; m = int(t / 60) % 60; s = t % 60
        k = 1 + int(rand() * 6); r = rand()
        code = 200; flags = "-"; det = "via_upstream"; reason = "-"
        if (r < 0.004) { code = 503; flags = "UC"; det = uc }
        else if (r < 0.006) { code = 503; flags = "UF,URX"; det = cf; reason = "delayed connect error: Connection refused" }
        else if (r < 0.02) { code = 404 }
        if (k % 2 == 0) cl = "inbound|9080||"; else cl = "outbound|9080|v1|" svc[k] ".prod.svc.cluster.local"
        printf "[2024-05-01T%02d:%02d:%02d.%03dZ] \"%s /api/v1/%s/%d HTTP/1.1\" %d %s %s - \"%s\" 0 %d %d %d \"-\" \"curl/8.5.0\" \"%08x-1111-2222-3333-444455556666\" \"%s.prod:9080\" \"10.0.1.%d:9080\" %s 10.0.0.9:41234 10.0.1.7:9080 10.0.0.9:50000 - default\n", \
            h, m, s, ms, meth[k], svc[k], i % 1000, code, flags, det, reason, (code == 200 ? 295 : 0), 3 + i % 17, 2 + i % 11, i, svc[k], k, cl
    }
}
