# One VPC across two zones; every cluster of this cloud gets a vSwitch in each zone, an ACK
# managed cluster and a node pool; the cloud's Redis (and RocketMQ) serve all of them, and one
# OSS bucket keeps their Velero backups.
data "alicloud_zones" "vswitch" {
  available_resource_creation = "VSwitch"
}

locals {
  prefix = "${var.name}-aliyun"
  zones  = slice(sort(data.alicloud_zones.vswitch.ids), 0, 2)
  subnets = merge([
    for name, c in var.clusters : {
      for z in [0, 1] : "${name}-${z}" => {
        cluster = name
        zone    = local.zones[z]
        cidr    = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), c.index * 2 + z)
      }
    }
  ]...)
  # the data services' own vSwitch: the last /24 of the VPC
  data_cidr = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), pow(2, 24 - tonumber(split("/", var.vpc_cidr)[1])) - 1)
}

resource "alicloud_vpc" "this" {
  vpc_name   = local.prefix
  cidr_block = var.vpc_cidr
}

resource "alicloud_vswitch" "nodes" {
  for_each     = local.subnets
  vswitch_name = "${var.name}-${each.key}"
  vpc_id       = alicloud_vpc.this.id
  zone_id      = each.value.zone
  cidr_block   = each.value.cidr
}

resource "alicloud_vswitch" "data" {
  vswitch_name = "${local.prefix}-data"
  vpc_id       = alicloud_vpc.this.id
  zone_id      = local.zones[0]
  cidr_block   = local.data_cidr
}

resource "alicloud_cs_managed_kubernetes" "this" {
  for_each           = var.clusters
  name               = "${var.name}-${each.key}"
  cluster_spec       = "ack.pro.small"
  version            = var.kubernetes_version
  worker_vswitch_ids = [for z in [0, 1] : alicloud_vswitch.nodes["${each.key}-${z}"].id]
  # Flannel: pods and services in ranges of their own, distinct per cluster
  pod_cidr             = cidrsubnet("172.16.0.0/12", 4, each.value.index)
  service_cidr         = cidrsubnet("172.16.0.0/12", 4, each.value.index + 8)
  node_cidr_mask       = 24
  proxy_mode           = "ipvs"
  new_nat_gateway      = true
  slb_internet_enabled = true
  deletion_protection  = each.value.deletion_guard
  addons {
    name = "flannel"
  }
  addons {
    name = "csi-plugin"
  }
  addons {
    name = "csi-provisioner"
  }
}

resource "alicloud_cs_kubernetes_node_pool" "this" {
  for_each             = var.clusters
  node_pool_name       = "default"
  cluster_id           = alicloud_cs_managed_kubernetes.this[each.key].id
  vswitch_ids          = [for z in [0, 1] : alicloud_vswitch.nodes["${each.key}-${z}"].id]
  instance_types       = each.value.instance_types
  image_type           = var.node_image
  desired_size         = each.value.nodes
  system_disk_category = "cloud_essd"
  system_disk_size     = 120
}

# the cluster's long-lived administrator kubeconfig (no temporary_duration_minutes: a temporary
# one would stop working in KubeVela's cluster gateway when it expires)
data "alicloud_cs_cluster_credential" "this" {
  for_each   = var.clusters
  cluster_id = alicloud_cs_managed_kubernetes.this[each.key].id
}

resource "alicloud_kvstore_instance" "redis" {
  db_instance_name = "${local.prefix}-redis"
  instance_type    = "Redis"
  engine_version   = "5.0"
  instance_class   = var.redis_instance_class
  zone_id          = local.zones[0]
  vswitch_id       = alicloud_vswitch.data.id
  security_ips     = [var.vpc_cidr]
  password         = var.redis_password
}

resource "alicloud_rocketmq_instance" "this" {
  count           = var.rocketmq ? 1 : 0
  instance_name   = "${local.prefix}-rocketmq"
  service_code    = "rmq"
  payment_type    = "PayAsYouGo"
  series_code     = "standard"
  sub_series_code = "cluster_ha"
  product_info {
    msg_process_spec       = "rmq.s2.2xlarge"
    message_retention_time = "72"
  }
  network_info {
    vpc_info {
      vpc_id = alicloud_vpc.this.id
      vswitches {
        vswitch_id = alicloud_vswitch.data.id
      }
    }
    internet_info {
      internet_spec = "disable"
      flow_out_type = "uninvolved"
    }
  }
}

resource "alicloud_oss_bucket" "backups" {
  bucket = "${var.name}-aliyun-backups"
  versioning {
    status = "Enabled"
  }
  server_side_encryption_rule {
    sse_algorithm = "AES256"
  }
}

resource "alicloud_oss_bucket_acl" "backups" {
  bucket = alicloud_oss_bucket.backups.bucket
  acl    = "private"
}

resource "alicloud_alidns_record" "hub" {
  for_each    = var.dns_zone != null && var.ingress_address != "" ? toset(var.dns_records) : toset([])
  domain_name = var.dns_zone
  rr          = each.key
  type        = "A"
  value       = var.ingress_address
  ttl         = 600
}
