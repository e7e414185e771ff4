# One VPC across two zones with a NAT gateway (the nodes' way out: images, Git, the hub); every
# cluster of this cloud gets a subnet in each zone, a CCE cluster
# (highly available masters for the guarded ones) with a public API address and a node pool per
# zone; the cloud's Redis (and RocketMQ) serve all of them, and one OBS bucket keeps their
# Velero backups.
data "huaweicloud_availability_zones" "this" {}

locals {
  prefix = "${var.name}-huawei"
  bits   = 24 - tonumber(split("/", var.vpc_cidr)[1])
  zones  = slice(sort(data.huaweicloud_availability_zones.this.names), 0, 2)
  subnets = merge([for name, c in var.clusters : { for z in [0, 1] : "${name}-${z}" => {
    cluster = name
    zone    = local.zones[z]
    cidr    = cidrsubnet(var.vpc_cidr, local.bits, c.index * 2 + z)
    # half the nodes in each zone, the odd one in the first
    nodes = z == 0 ? ceil(c.nodes / 2) : floor(c.nodes / 2)
  } }]...)
  data_cidr = cidrsubnet(var.vpc_cidr, local.bits, pow(2, local.bits) - 1)
}

resource "huaweicloud_vpc" "this" {
  name = local.prefix
  cidr = var.vpc_cidr
}

resource "huaweicloud_vpc_subnet" "nodes" {
  for_each          = local.subnets
  name              = "${var.name}-${each.key}"
  vpc_id            = huaweicloud_vpc.this.id
  availability_zone = each.value.zone
  cidr              = each.value.cidr
  gateway_ip        = cidrhost(each.value.cidr, 1)
}

resource "huaweicloud_vpc_subnet" "data" {
  name              = "${local.prefix}-data"
  vpc_id            = huaweicloud_vpc.this.id
  availability_zone = local.zones[0]
  cidr              = local.data_cidr
  gateway_ip        = cidrhost(local.data_cidr, 1)
}

resource "huaweicloud_vpc_eip" "nat" {
  publicip {
    type = "5_bgp"
  }
  bandwidth {
    share_type  = "PER"
    name        = "${local.prefix}-nat"
    size        = 100
    charge_mode = "traffic"
  }
}

resource "huaweicloud_nat_gateway" "this" {
  name      = "${local.prefix}-nat"
  spec      = "1"
  vpc_id    = huaweicloud_vpc.this.id
  subnet_id = huaweicloud_vpc_subnet.data.id
}

resource "huaweicloud_nat_snat_rule" "nodes" {
  for_each       = local.subnets
  nat_gateway_id = huaweicloud_nat_gateway.this.id
  floating_ip_id = huaweicloud_vpc_eip.nat.id
  subnet_id      = huaweicloud_vpc_subnet.nodes[each.key].id
}

resource "huaweicloud_vpc_eip" "api" {
  for_each = var.clusters
  publicip {
    type = "5_bgp"
  }
  bandwidth {
    share_type  = "PER"
    name        = "${var.name}-${each.key}-api"
    size        = 5
    charge_mode = "traffic"
  }
}

resource "huaweicloud_cce_cluster" "this" {
  for_each               = var.clusters
  name                   = "${var.name}-${each.key}"
  flavor_id              = each.value.deletion_guard ? "cce.s2.small" : "cce.s1.small"
  cluster_version        = var.kubernetes_version
  vpc_id                 = huaweicloud_vpc.this.id
  subnet_id              = huaweicloud_vpc_subnet.nodes["${each.key}-0"].id
  container_network_type = "vpc-router"
  container_network_cidr = cidrsubnet("172.16.0.0/12", 4, each.value.index)
  service_network_cidr   = cidrsubnet("172.16.0.0/12", 4, each.value.index + 8)
  eip                    = huaweicloud_vpc_eip.api[each.key].address
  # a guarded cluster's disks and buckets outlive it
  delete_all = each.value.deletion_guard ? "false" : "true"
}

resource "huaweicloud_kps_keypair" "nodes" {
  name = "${local.prefix}-nodes"
}

resource "huaweicloud_cce_node_pool" "this" {
  for_each           = local.subnets
  name               = "default-${substr(each.key, length(each.key) - 1, 1)}"
  cluster_id         = huaweicloud_cce_cluster.this[each.value.cluster].id
  availability_zone  = each.value.zone
  subnet_id          = huaweicloud_vpc_subnet.nodes[each.key].id
  os                 = var.node_image
  flavor_id          = var.clusters[each.value.cluster].instance_types[0]
  initial_node_count = each.value.nodes
  key_pair           = huaweicloud_kps_keypair.nodes.name
  type               = "vm"
  root_volume {
    size       = 50
    volumetype = "GPSSD"
  }
  data_volumes {
    size       = 100
    volumetype = "GPSSD"
  }
}

resource "huaweicloud_dcs_instance" "redis" {
  name               = "${local.prefix}-redis"
  engine             = "Redis"
  engine_version     = "6.0"
  capacity           = 1
  flavor             = var.redis_flavor
  availability_zones = local.zones
  password           = var.redis_password
  vpc_id             = huaweicloud_vpc.this.id
  subnet_id          = huaweicloud_vpc_subnet.data.id
}

resource "huaweicloud_networking_secgroup" "rocketmq" {
  count = var.rocketmq ? 1 : 0
  name  = "${local.prefix}-rocketmq"
}

# from the VPC, and from the pods' own addresses (CCE's VPC routing keeps them)
resource "huaweicloud_networking_secgroup_rule" "rocketmq" {
  for_each          = var.rocketmq ? { vpc = var.vpc_cidr, pods = "172.16.0.0/12" } : {}
  security_group_id = huaweicloud_networking_secgroup.rocketmq[0].id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  ports             = "8100,8200,10100-10199"
  remote_ip_prefix  = each.value
}

resource "huaweicloud_dms_rocketmq_instance" "this" {
  count              = var.rocketmq ? 1 : 0
  name               = "${local.prefix}-rocketmq"
  engine_version     = "4.8.0"
  flavor_id          = "c6.4u8g.cluster.small"
  storage_spec_code  = "dms.physical.storage.high.v2"
  storage_space      = 300
  broker_num         = 1
  availability_zones = local.zones
  vpc_id             = huaweicloud_vpc.this.id
  subnet_id          = huaweicloud_vpc_subnet.data.id
  security_group_id  = huaweicloud_networking_secgroup.rocketmq[0].id
}

resource "huaweicloud_obs_bucket" "backups" {
  bucket        = "${var.name}-huawei-backups"
  acl           = "private"
  versioning    = true
  encryption    = true
  sse_algorithm = "AES256"
}

data "huaweicloud_dns_zones" "hub" {
  count     = var.dns_zone != null ? 1 : 0
  zone_type = "public"
  name      = var.dns_zone
}

resource "huaweicloud_dns_recordset" "hub" {
  for_each = var.dns_zone != null && var.ingress_address != "" ? toset(var.dns_records) : toset([])
  zone_id  = one([for z in data.huaweicloud_dns_zones.hub[0].zones : z.id if trimsuffix(z.name, ".") == var.dns_zone])
  name     = "${each.key}.${var.dns_zone}."
  type     = "A"
  ttl      = 600
  records  = [var.ingress_address]
}
