-- gen database schema for sqlite, generated from db/models.py.
-- Do not edit: regenerate with `python -m db.ddl --write`.
-- Databases made by gen also hold Alembic's alembic_version table (the schema revision).

CREATE TABLE classifiers (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	path VARCHAR NOT NULL,
	sha256 CHAR(64) NOT NULL,
	architecture JSON NOT NULL,
	accuracy DOUBLE NOT NULL,
	created_at DATETIME NOT NULL
);

CREATE INDEX ix_classifiers_dataset_fingerprint ON classifiers (dataset_fingerprint);

CREATE TABLE gan_architectures (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	generator JSON NOT NULL,
	discriminator JSON NOT NULL,
	preset VARCHAR,
	created_at DATETIME NOT NULL
);

CREATE TABLE searches (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	stage VARCHAR NOT NULL,
	dataset_path VARCHAR NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	settings JSON NOT NULL,
	seed INTEGER NOT NULL,
	status VARCHAR NOT NULL,
	created_at DATETIME NOT NULL
);

CREATE TABLE checkpoints (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	gan INTEGER NOT NULL,
	path VARCHAR NOT NULL,
	iteration INTEGER NOT NULL,
	sha256 CHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	domain_fid DOUBLE,
	CONSTRAINT fk_checkpoints_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_checkpoints_gan_iteration ON checkpoints (gan, iteration);

CREATE TABLE class_names (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	name VARCHAR NOT NULL,
	gan INTEGER NOT NULL,
	label INTEGER NOT NULL,
	CONSTRAINT uq_class_names_gan_label UNIQUE (gan, label),
	CONSTRAINT uq_class_names_gan_name UNIQUE (gan, name),
	CONSTRAINT fk_class_names_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE search_candidates (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	search INTEGER NOT NULL,
	architecture INTEGER NOT NULL,
	parent INTEGER,
	step INTEGER NOT NULL,
	fitness DOUBLE,
	budget JSON NOT NULL,
	seconds DOUBLE NOT NULL,
	worker VARCHAR,
	status VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT uq_search_candidates_search_step UNIQUE (search, step),
	CONSTRAINT fk_search_candidates_search_searches FOREIGN KEY(search) REFERENCES searches (id),
	CONSTRAINT fk_search_candidates_architecture_gan_architectures FOREIGN KEY(architecture) REFERENCES gan_architectures (id),
	CONSTRAINT fk_search_candidates_parent_search_candidates FOREIGN KEY(parent) REFERENCES search_candidates (id)
);

CREATE TABLE training_parameters (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	g_optimizer VARCHAR NOT NULL,
	d_optimizer VARCHAR NOT NULL,
	loss VARCHAR NOT NULL,
	batch_size INTEGER NOT NULL,
	epochs INTEGER,
	g_lr DOUBLE NOT NULL,
	d_lr DOUBLE NOT NULL,
	gan INTEGER NOT NULL,
	betas JSON,
	ema_decay DOUBLE,
	diffaugment VARCHAR,
	iterations INTEGER NOT NULL,
	dataset_path VARCHAR,
	dataset_fingerprint VARCHAR(64),
	device VARCHAR,
	seed INTEGER,
	settings JSON,
	created_at DATETIME NOT NULL,
	CONSTRAINT uq_training_parameters_gan UNIQUE (gan),
	CONSTRAINT fk_training_parameters_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE images (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	file_path VARCHAR NOT NULL,
	class_name INTEGER NOT NULL,
	md5 CHAR(32) NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	sample_index INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	batch_size INTEGER,
	threads INTEGER,
	device VARCHAR,
	torch_version VARCHAR,
	CONSTRAINT uq_images_checkpoint_class_name_seed_sample_index_file_path UNIQUE (checkpoint, class_name, seed, sample_index, file_path),
	CONSTRAINT fk_images_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id),
	CONSTRAINT fk_images_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id)
);

CREATE INDEX ix_images_class_name ON images (class_name);

CREATE TABLE reports (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	gan INTEGER NOT NULL,
	metric VARCHAR NOT NULL,
	class_name INTEGER,
	value DOUBLE NOT NULL,
	settings JSON,
	created_at DATETIME NOT NULL,
	CONSTRAINT fk_reports_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_reports_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id)
);

CREATE INDEX ix_reports_gan_metric ON reports (gan, metric);
