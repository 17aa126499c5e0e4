datacenter = "aini"
data_dir = "/consul/data"
server = true
bootstrap_expect = 1
client_addr = "0.0.0.0"
ui_config { enabled = true }
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
