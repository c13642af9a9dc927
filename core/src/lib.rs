//! The MiniCluster contract shared by every minicluster binary.
