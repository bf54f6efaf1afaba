-- gen database schema for postgresql, generated from db/models.py.
-- Do not edit: regenerate with `python -m db.ddl --write`.
-- Databases made by gen also hold Alembic's alembic_version table (the schema revision).

CREATE TABLE classifiers (
	id SERIAL NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	path VARCHAR NOT NULL,
	sha256 CHAR(64) NOT NULL,
	architecture JSONB NOT NULL,
	accuracy DOUBLE PRECISION NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_classifiers PRIMARY KEY (id)
);

CREATE INDEX ix_classifiers_dataset_fingerprint ON classifiers (dataset_fingerprint);

CREATE TABLE gan_architectures (
	id SERIAL NOT NULL,
	generator JSONB NOT NULL,
	discriminator JSONB NOT NULL,
	preset VARCHAR,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_gan_architectures PRIMARY KEY (id)
);

CREATE TABLE searches (
	id SERIAL NOT NULL,
	stage VARCHAR NOT NULL,
	dataset_path VARCHAR NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	settings JSONB NOT NULL,
	seed INTEGER NOT NULL,
	status VARCHAR NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_searches PRIMARY KEY (id)
);

CREATE TABLE checkpoints (
	id SERIAL NOT NULL,
	gan INTEGER NOT NULL,
	path VARCHAR NOT NULL,
	iteration INTEGER NOT NULL,
	sha256 CHAR(64) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	domain_fid DOUBLE PRECISION,
	CONSTRAINT pk_checkpoints PRIMARY KEY (id),
	CONSTRAINT fk_checkpoints_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_checkpoints_gan_iteration ON checkpoints (gan, iteration);

CREATE TABLE class_names (
	id SERIAL NOT NULL,
	name VARCHAR NOT NULL,
	gan INTEGER NOT NULL,
	label INTEGER NOT NULL,
	CONSTRAINT pk_class_names PRIMARY KEY (id),
	CONSTRAINT uq_class_names_gan_label UNIQUE (gan, label),
	CONSTRAINT uq_class_names_gan_name UNIQUE (gan, name),
	CONSTRAINT fk_class_names_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE search_candidates (
	id SERIAL NOT NULL,
	search INTEGER NOT NULL,
	architecture INTEGER NOT NULL,
	parent INTEGER,
	step INTEGER NOT NULL,
	fitness DOUBLE PRECISION,
	budget JSONB NOT NULL,
	seconds DOUBLE PRECISION NOT NULL,
	worker VARCHAR,
	status VARCHAR NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_search_candidates PRIMARY KEY (id),
	CONSTRAINT uq_search_candidates_search_step UNIQUE (search, step),
	CONSTRAINT fk_search_candidates_search_searches FOREIGN KEY(search) REFERENCES searches (id),
	CONSTRAINT fk_search_candidates_architecture_gan_architectures FOREIGN KEY(architecture) REFERENCES gan_architectures (id),
	CONSTRAINT fk_search_candidates_parent_search_candidates FOREIGN KEY(parent) REFERENCES search_candidates (id)
);

CREATE TABLE training_parameters (
	id SERIAL NOT NULL,
	g_optimizer VARCHAR NOT NULL,
	d_optimizer VARCHAR NOT NULL,
	loss VARCHAR NOT NULL,
	batch_size INTEGER NOT NULL,
	epochs INTEGER,
	g_lr DOUBLE PRECISION NOT NULL,
	d_lr DOUBLE PRECISION NOT NULL,
	gan INTEGER NOT NULL,
	betas JSONB,
	ema_decay DOUBLE PRECISION,
	diffaugment VARCHAR,
	iterations INTEGER NOT NULL,
	dataset_path VARCHAR,
	dataset_fingerprint VARCHAR(64),
	device VARCHAR,
	seed INTEGER,
	settings JSONB,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_training_parameters PRIMARY KEY (id),
	CONSTRAINT uq_training_parameters_gan UNIQUE (gan),
	CONSTRAINT fk_training_parameters_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE images (
	id SERIAL NOT NULL,
	file_path VARCHAR NOT NULL,
	class_name INTEGER NOT NULL,
	md5 CHAR(32) NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	sample_index INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	batch_size INTEGER,
	threads INTEGER,
	device VARCHAR,
	torch_version VARCHAR,
	CONSTRAINT pk_images PRIMARY KEY (id),
	CONSTRAINT uq_images_checkpoint_class_name_seed_sample_index_file_path UNIQUE (checkpoint, class_name, seed, sample_index, file_path),
	CONSTRAINT fk_images_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id),
	CONSTRAINT fk_images_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id)
);

CREATE INDEX ix_images_class_name ON images (class_name);

CREATE TABLE reports (
	id SERIAL NOT NULL,
	gan INTEGER NOT NULL,
	metric VARCHAR NOT NULL,
	class_name INTEGER,
	value DOUBLE PRECISION NOT NULL,
	settings JSONB,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_reports PRIMARY KEY (id),
	CONSTRAINT fk_reports_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_reports_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id)
);

CREATE INDEX ix_reports_gan_metric ON reports (gan, metric);
