# One VPC across two zones with a NAT gateway (the nodes' way out: images, Git, the hub); every
# cluster of this cloud gets a subnet in each zone, a TKE managed cluster with a public API
# endpoint and a node pool; the cloud's Redis (and RocketMQ) serve all of them, and one COS
# bucket keeps their Velero backups.
data "tencentcloud_availability_zones_by_product" "cvm" {
  product = "cvm"
}

data "tencentcloud_user_info" "this" {}

locals {
  prefix  = "${var.name}-tencent"
  bits    = 24 - tonumber(split("/", var.vpc_cidr)[1])
  zones   = slice(sort([for z in data.tencentcloud_availability_zones_by_product.cvm.zones : z.name if z.state == "AVAILABLE"]), 0, 2)
  subnets = merge([for name, c in var.clusters : { for z in [0, 1] : "${name}-${z}" => { zone = local.zones[z], cidr = cidrsubnet(var.vpc_cidr, local.bits, c.index * 2 + z) } }]...)
}

resource "tencentcloud_vpc" "this" {
  name       = local.prefix
  cidr_block = var.vpc_cidr
}

resource "tencentcloud_eip" "nat" {
  name                       = "${local.prefix}-nat"
  internet_charge_type       = "TRAFFIC_POSTPAID_BY_HOUR"
  internet_max_bandwidth_out = 100
}

resource "tencentcloud_nat_gateway" "this" {
  name             = "${local.prefix}-nat"
  vpc_id           = tencentcloud_vpc.this.id
  bandwidth        = 100
  max_concurrent   = 1000000
  assigned_eip_set = [tencentcloud_eip.nat.public_ip]
}

resource "tencentcloud_route_table" "nodes" {
  name   = "${local.prefix}-nodes"
  vpc_id = tencentcloud_vpc.this.id
}

resource "tencentcloud_route_table_entry" "internet" {
  route_table_id         = tencentcloud_route_table.nodes.id
  destination_cidr_block = "0.0.0.0/0"
  next_type              = "NAT"
  next_hub               = tencentcloud_nat_gateway.this.id
}

resource "tencentcloud_subnet" "nodes" {
  for_each          = local.subnets
  name              = "${var.name}-${each.key}"
  vpc_id            = tencentcloud_vpc.this.id
  availability_zone = each.value.zone
  cidr_block        = each.value.cidr
  route_table_id    = tencentcloud_route_table.nodes.id
}

resource "tencentcloud_subnet" "data" {
  name              = "${local.prefix}-data"
  vpc_id            = tencentcloud_vpc.this.id
  availability_zone = local.zones[0]
  cidr_block        = cidrsubnet(var.vpc_cidr, local.bits, pow(2, local.bits) - 1)
}

# The API server's public endpoint admits HTTPS only.
resource "tencentcloud_security_group" "api" {
  name        = "${local.prefix}-api"
  description = "Kubernetes API servers of ${local.prefix}"
}

resource "tencentcloud_security_group_lite_rule" "api" {
  security_group_id = tencentcloud_security_group.api.id
  ingress           = ["ACCEPT#0.0.0.0/0#443#TCP", "DROP#0.0.0.0/0#ALL#ALL"]
}

resource "tencentcloud_kubernetes_cluster" "this" {
  for_each                = var.clusters
  cluster_name            = "${var.name}-${each.key}"
  cluster_version         = var.kubernetes_version
  cluster_deploy_type     = "MANAGED_CLUSTER"
  container_runtime       = "containerd"
  vpc_id                  = tencentcloud_vpc.this.id
  network_type            = "GR"
  cluster_cidr            = cidrsubnet("172.16.0.0/12", 4, each.value.index)
  service_cidr            = cidrsubnet("172.16.0.0/12", 4, each.value.index + 8)
  cluster_max_pod_num     = 64
  cluster_max_service_num = 1024
  deletion_protection     = each.value.deletion_guard
}

resource "tencentcloud_kubernetes_cluster_endpoint" "this" {
  for_each                        = var.clusters
  cluster_id                      = tencentcloud_kubernetes_cluster.this[each.key].id
  cluster_internet                = true
  cluster_internet_security_group = tencentcloud_security_group.api.id
  depends_on                      = [tencentcloud_kubernetes_node_pool.this]
}

resource "tencentcloud_kubernetes_node_pool" "this" {
  for_each                 = var.clusters
  name                     = "default"
  cluster_id               = tencentcloud_kubernetes_cluster.this[each.key].id
  vpc_id                   = tencentcloud_vpc.this.id
  subnet_ids               = [for z in [0, 1] : tencentcloud_subnet.nodes["${each.key}-${z}"].id]
  multi_zone_subnet_policy = "EQUALITY"
  node_os                  = var.node_image
  min_size                 = each.value.nodes
  max_size                 = each.value.nodes * 2
  desired_capacity         = each.value.nodes
  enable_auto_scale        = true
  auto_scaling_config {
    instance_type         = each.value.instance_types[0]
    backup_instance_types = slice(each.value.instance_types, 1, length(each.value.instance_types))
    system_disk_type      = "CLOUD_SSD"
    system_disk_size      = 120
  }
}

# The kubeconfig, read once the public endpoint exists (the cluster resource reads it while the
# cluster is created, before there is an endpoint to name).
data "tencentcloud_kubernetes_clusters" "this" {
  for_each   = var.clusters
  cluster_id = tencentcloud_kubernetes_cluster.this[each.key].id
  depends_on = [tencentcloud_kubernetes_cluster_endpoint.this]
}

resource "tencentcloud_redis_instance" "this" {
  name              = "${local.prefix}-redis"
  availability_zone = local.zones[0]
  type_id           = 17 # Redis 7.0, standard architecture (primary and replica)
  mem_size          = var.redis_memory_mb
  password          = var.redis_password
  vpc_id            = tencentcloud_vpc.this.id
  subnet_id         = tencentcloud_subnet.data.id
  port              = 6379
}

resource "tencentcloud_trocket_rocketmq_instance" "this" {
  count             = var.rocketmq ? 1 : 0
  name              = "${local.prefix}-rocketmq"
  instance_type     = "BASIC"
  sku_code          = "basic_2k"
  vpc_id            = tencentcloud_vpc.this.id
  subnet_id         = tencentcloud_subnet.data.id
  message_retention = 72
}

resource "tencentcloud_cos_bucket" "backups" {
  bucket               = "${var.name}-tencent-backups-${data.tencentcloud_user_info.this.app_id}"
  acl                  = "private"
  versioning_enable    = true
  encryption_algorithm = "AES256"
}

resource "tencentcloud_dnspod_record" "hub" {
  for_each    = var.dns_zone != null && var.ingress_address != "" ? toset(var.dns_records) : toset([])
  domain      = var.dns_zone
  sub_domain  = each.key
  record_type = "A"
  record_line = "默认"
  value       = var.ingress_address
  ttl         = 600
}
