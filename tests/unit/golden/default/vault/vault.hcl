ui = true
disable_mlock = true
storage "raft" {
  path = "/vault/file"
  node_id = "aini"
}
listener "tcp" {
  address = "0.0.0.0:8200"
  tls_disable = true
}
api_addr = "https://vault.example.com"
cluster_addr = "http://127.0.0.1:8201"
