datacenter = "aini"
data_dir = "/consul/data"
server = true
bootstrap_expect = 1
bind_addr = "10.87.0.4"
advertise_addr = "10.87.0.4"
client_addr = "127.0.0.1 10.87.0.4"
ports {
  dns = -1
}
ui_config {
  enabled = true
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
